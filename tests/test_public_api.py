"""The public API: its names, and type hints on every public function and method."""

import importlib
import inspect
import pkgutil

import hdlmm

PUBLIC = ["warm_up", "SparseLMM", "SparseGLMM", "ClusterStats", "ProxyTransform", "best_subset",
          "best_subset_path",
          "make_lmm_data", "make_tutorial_data", "LMMData", "DEFAULT_A_GRID", "TableSpec",
          "stream_stats", "compare_models", "__version__"]


def test_public_names():
    assert hdlmm.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(hdlmm, name) is not None


def _with_methods(qualname, obj):
    """(name, function) of a function, or of a class's public methods and __init__."""
    obj = getattr(obj, "py_func", obj)  # a compiled (numba) function
    if inspect.isfunction(obj):
        yield qualname, obj
    elif inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_") and attr != "__init__":
                continue
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if isinstance(member, property):
                member = member.fget
            if inspect.isfunction(member):
                yield f"{qualname}.{attr}", member


def _module_callables():
    """Every public function and class that a module of hdlmm lists in its __all__ and
    defines (names with a leading underscore are private)."""
    for info in pkgutil.walk_packages(hdlmm.__path__, "hdlmm."):
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            defined_here = getattr(getattr(obj, "py_func", obj), "__module__", None)
            if not name.startswith("_") and defined_here == module.__name__:
                yield from _with_methods(f"{info.name}.{name}", obj)


def _untyped(items):
    missing = []
    for qualname, fn in items:
        sig = inspect.signature(fn)
        untyped = [p.name for p in sig.parameters.values()
                   if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        if untyped:
            missing.append(f"{qualname}: {untyped}")
        if sig.return_annotation is inspect.Signature.empty and fn.__name__ != "__init__":
            missing.append(f"{qualname}: return")
    return missing


def test_every_public_function_and_method_has_type_hints():
    items = [pair for name in PUBLIC for pair in _with_methods(name, getattr(hdlmm, name))]
    assert len(items) > 40
    missing = _untyped(items)
    assert not missing, "\n".join(missing)


def test_every_module_level_public_function_has_type_hints():
    items = list(_module_callables())
    assert len(items) > 150
    missing = _untyped(items)
    assert not missing, "\n".join(missing)
