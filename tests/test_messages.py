"""Every parameter a message tells the user to set exists: an error or warning that
says ``cov_structure='diagonal'`` must name a real parameter of hdlmm's API."""

import ast
import inspect
import re
from pathlib import Path

import hdlmm
from hdlmm import SparseLMM

SUGGESTION = re.compile(r"\b([a-z_]+)=(?:'|\"|\d|None\b|True\b|False\b|\.\.\.)")


def _api_arguments():
    names = set(SparseLMM().get_params())
    for _, member in inspect.getmembers(SparseLMM, inspect.isfunction):
        names |= set(inspect.signature(member).parameters)
    for name in hdlmm.__all__:
        obj = getattr(hdlmm, name)
        if callable(obj):
            try:
                names |= set(inspect.signature(obj).parameters)
            except (TypeError, ValueError):
                pass
    return names


def _message_texts(tree):
    """The string pieces of every raise and warnings.warn call."""
    for node in ast.walk(tree):
        call = node.exc if isinstance(node, ast.Raise) else node
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        is_warn = isinstance(func, ast.Attribute) and func.attr == "warn"
        if isinstance(node, ast.Raise) or is_warn:
            for arg in call.args:
                for piece in ast.walk(arg):
                    if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
                        yield piece.value


def test_suggested_parameters_exist():
    # arguments of other libraries' functions that messages quote: pandas' to_csv
    # (index=False), Dask's from_pandas (npartitions=8), numpy's sum (axis=1)
    known = _api_arguments() | {"index", "npartitions", "axis"}
    unknown = []
    for path in Path(hdlmm.__file__).parent.rglob("*.py"):
        for text in _message_texts(ast.parse(path.read_text())):
            unknown += [(path.name, name) for name in SUGGESTION.findall(text)
                        if name not in known]
    assert not unknown, unknown
