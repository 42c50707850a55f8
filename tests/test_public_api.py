"""The public API: its names, and type hints on every public function and method."""

import inspect

import hdlmm

PUBLIC = ["SparseLMM", "ClusterStats", "ProxyTransform", "best_subset", "best_subset_path",
          "make_lmm_data", "make_tutorial_data", "LMMData", "DEFAULT_A_GRID", "TableSpec",
          "stream_stats", "compare_models", "__version__"]


def test_public_names():
    assert hdlmm.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(hdlmm, name) is not None


def _callables():
    for name in PUBLIC:
        obj = getattr(hdlmm, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member):
                    yield f"{name}.{attr}", member


def test_every_public_function_and_method_has_type_hints():
    missing = []
    for qualname, fn in _callables():
        sig = inspect.signature(fn)
        untyped = [p.name for p in sig.parameters.values()
                   if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        if untyped:
            missing.append(f"{qualname}: {untyped}")
        if sig.return_annotation is inspect.Signature.empty and fn.__name__ != "__init__":
            missing.append(f"{qualname}: return")
    assert not missing, "\n".join(missing)


def _module_callables():
    """Every function and class a module of hdlmm lists in its __all__ (and defines),
    with the public methods of the classes."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(hdlmm.__path__, "hdlmm."):
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            if name.startswith("_"):  # private by name
                continue
            obj = getattr(module, name)
            obj = getattr(obj, "py_func", obj)  # a compiled (numba) function
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") and attr != "__init__":
                        continue
                    if isinstance(member, (classmethod, staticmethod)):
                        member = member.__func__
                    if isinstance(member, property):
                        member = member.fget
                    if inspect.isfunction(member):
                        yield f"{info.name}.{name}.{attr}", member


def test_every_module_level_public_function_has_type_hints():
    missing = []
    for qualname, fn in _module_callables():
        sig = inspect.signature(fn)
        untyped = [p.name for p in sig.parameters.values()
                   if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        if untyped or (sig.return_annotation is inspect.Signature.empty
                       and fn.__name__ != "__init__"):
            missing.append(f"{qualname}: {untyped}")
    assert not missing, "\n".join(missing)
