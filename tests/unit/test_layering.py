"""The core stays pure: no I/O libraries, no clock, no randomness inside segmenters/."""

import ast
from pathlib import Path

import pytest

import segmenters

FORBIDDEN_MODULES = {
    "faust",
    "redis",
    "kafka",
    "aiokafka",
    "streams",
    "time",
    "random",
    "socket",
    "asyncio",
    "os",
    "requests",
    "httpx",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "monotonic"}
SOURCES = sorted(Path(segmenters.__file__).parent.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_segmenters_import_no_io_or_clock(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, (
                f"{path.name}:{node.lineno} calls .{node.func.attr}() (pass the time in instead)"
            )


def test_sources_found():
    assert len(SOURCES) >= 6


# --- no import cycles: the layout's layers point one way ---------------------------------


def _module_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level (imports inside
    functions are deliberate late bindings and not counted)."""
    root = package.parent
    mods: dict[str, Path] = {}
    for p in package.rglob("*.py"):
        name = ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = p
    graph: dict[str, set[str]] = {}
    for mod, p in mods.items():
        here = mod if p.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.parse(p.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    target = ".".join(parts + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for t in (target, *(f"{target}.{a.name}" for a in node.names)):
                    if t in mods and t != mod:
                        deps.add(t)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods and a.name != mod)
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan).

    >>> _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", ["streams", "segmenters"])
def test_no_import_cycles(package):
    root = Path(segmenters.__file__).parent.parent / package
    graph = _module_graph(root)
    assert len(graph) > 10
    assert _cycles(graph) == []


def test_a_cycle_is_found():
    assert _cycles({"x.a": {"x.b"}, "x.b": {"x.c"}, "x.c": {"x.a"}}) == [["x.a", "x.b", "x.c"]]
