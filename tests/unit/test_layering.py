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
