"""The folders are the layers: no module imports from a layer above its own, and no
modules import each other in a circle (imports inside functions included)."""

import ast
from pathlib import Path

import hdlmm

PACKAGE = Path(hdlmm.__file__).parent

#: The layers each layer may import (besides itself and hdlmm._version).
ALLOWED = {
    "core": {"core"},
    "model": {"core", "model"},
    "sources": {"core", "sources"},
    "inference": {"core", "model", "inference"},
    "api": {"core", "model", "sources", "inference", "api"},
}


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, typing_only=True):
    """The hdlmm modules a file imports (absolute imports; the package uses no others),
    with or without those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    found = set()
    tree = ast.parse(path.read_text())
    if not typing_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; use hdlmm.<layer>.<module>"
            if node.module and node.module.split(".")[0] == "hdlmm":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "hdlmm"}
    return found


def _graph(typing_only=True):
    return {_module_name(f): _imports(f, typing_only) for f in PACKAGE.rglob("*.py")}


def _layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_every_module_is_in_a_layer():
    loose = [m for m in _graph() if _layer(m) is None and m not in ("hdlmm", "hdlmm._version")]
    assert not loose, f"modules outside the layer folders: {loose}"
    assert {_layer(m) for m in _graph()} - {None} == set(ALLOWED)


def test_no_import_from_a_higher_layer():
    bad = []
    for module, imported in _graph().items():
        layer = _layer(module)
        if layer is None:
            continue
        for target in imported:
            if target == "hdlmm._version":
                continue
            if target == "hdlmm" or _layer(target) not in ALLOWED[layer]:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circle():
    """No circle among the imports that run (those for annotations only may point back
    within a layer, e.g. to the estimator's type)."""
    graph = {m: {t for t in deps if t != m} for m, deps in _graph(typing_only=False).items()}
    done, stack = set(), []

    def visit(module):
        if module in stack:
            raise AssertionError("import circle: " + " -> ".join(
                stack[stack.index(module):] + [module]))
        if module in done or module not in graph:
            return
        stack.append(module)
        for target in sorted(graph[module]):
            visit(target)
        stack.pop()
        done.add(module)

    for module in sorted(graph):
        if module != "hdlmm":  # the package re-exports the public API
            visit(module)
