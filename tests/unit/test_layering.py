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
    """Module -> the package's modules it imports, at any depth: an import inside a
    function only hides a cycle from the interpreter, not from the reader."""
    root = package.parent
    mods: dict[str, Path] = {}
    for p in package.rglob("*.py"):
        name = ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = p
    graph: dict[str, set[str]] = {}
    for mod, p in mods.items():
        here = mod if p.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(p.read_text())):
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


CLOCK_READS = {
    ("time", "time"),
    ("time", "monotonic"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
}


def test_segmenters_read_no_clock_even_without_calling_it():
    """A clock passed on uncalled (``clock=time.time``, ``datetime.now`` as a default) is
    still a clock read inside the core."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in CLOCK_READS
            ):
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert found == []


# --- the shell's folders: who may speak Redis, and which way imports point -------------

ROOT = Path(segmenters.__file__).parent.parent

#: Folders of streams/ from the top layer down (and the pure core last): a module may
#: import its own folder and the folders below it, never one above. The collector sits
#: beside the worker's store and uses it.
LAYERS = ("cli", "tools", "worker", "collector", "store", "kafka", "settings", "segmenters")
#: Local Kafka and Redis for development: only the CLI (and tests) start them, and they
#: use the store's and Kafka's clients like any other caller.
DEVSERVICES_MAY_IMPORT = {"devservices", "store", "kafka", "settings", "segmenters"}
DEVSERVICES_USED_BY = {"cli", "devservices"}


def _modules(*packages: str) -> dict[str, Path]:
    out = {}
    for package in packages:
        for p in sorted((ROOT / package).rglob("*.py")):
            out[".".join(p.relative_to(ROOT).with_suffix("").parts)] = p
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (in functions, under TYPE_CHECKING);
    ``from streams import devservices`` counts as ``streams.devservices``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if "." in node.module:
                found.append((node.lineno, node.module))
            else:
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _folder(module: str) -> str | None:
    """The layer folder of a module of streams/ or segmenters/; None for anything else
    (third-party modules, and ``streams`` itself)."""
    parts = module.split(".")
    if parts[0] == "segmenters":
        return "segmenters"
    if parts[0] != "streams" or len(parts) < 2:
        return None
    return parts[1]


def _layer_violations(modules: dict[str, Path]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    out = []
    for module, path in modules.items():
        here = _folder(module)
        for line, target in _imports(path):
            there = _folder(target)
            if there is None or there == here or here is None:
                continue
            if there == "devservices":
                ok = here in DEVSERVICES_USED_BY
            elif here == "devservices":
                ok = there in DEVSERVICES_MAY_IMPORT
            else:
                ok = here in rank and there in rank and rank[there] > rank[here]
            if not ok:
                out.append(f"{module}:{line} ({here}) imports {target} ({there})")
    return sorted(set(out))


def test_every_shell_module_has_a_layer():
    folders = {_folder(m) for m in _modules("streams", "segmenters")} - {None, "__init__"}
    assert folders <= {*LAYERS, "devservices"}, folders - {*LAYERS, "devservices"}


def test_imports_point_down_the_layers():
    assert _layer_violations(_modules("streams", "segmenters")) == []


def test_an_upward_import_is_found(tmp_path):
    planted = tmp_path / "lower.py"
    planted.write_text("def f():\n    from streams.worker.app import faust_app\n")
    devservices_user = tmp_path / "user.py"
    devservices_user.write_text("from streams import devservices\n")
    found = _layer_violations(
        {"streams.kafka.lower": planted, "streams.tools.user": devservices_user}
    )
    assert len(found) == 2, found
    assert "(kafka) imports streams.worker.app (worker)" in found[0]
    assert "(tools) imports streams.devservices (devservices)" in found[1]


def test_only_the_store_speaks_redis():
    """Redis calls live in streams/store/; everyone else calls its functions."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for module, path in _modules("streams", "segmenters").items()
        if not module.startswith("streams.store.")
        for line, target in _imports(path)
        if target.split(".")[0] == "redis"
    ]
    assert offenders == []


def _exists(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _missing_modules(modules: dict[str, Path]) -> list[str]:
    """Imports of streams/ or segmenters/ modules that do not exist, at any depth: an
    import inside a function fails only when that function runs."""
    out = []
    for module, path in modules.items():
        for line, target in _imports(path):
            if _folder(target) is None and target.split(".")[0] != "streams":
                continue
            parts = target.split(".")
            # ``from streams.x import name``: either a module streams.x.name or a name in x
            if not _exists(target) and (len(parts) < 2 or not _exists(".".join(parts[:-1]))):
                out.append(f"{module}:{line} imports {target}")
    return out


def test_every_import_names_a_module_that_exists():
    assert _missing_modules(_modules("streams", "segmenters")) == []


def test_a_missing_module_is_found(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from streams.tools.bench.tools.replay import replay\n")
    assert _missing_modules({"streams.tools.planted": planted}) == [
        "streams.tools.planted:2 imports streams.tools.bench.tools.replay"
    ]
