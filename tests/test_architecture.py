"""The layering the design promises: no import cycle, one module that speaks aiohttp."""

from __future__ import annotations

import ast
from pathlib import Path

import r9s_async

PACKAGE = Path(r9s_async.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module imported at module level (``TYPE_CHECKING`` blocks included), absolute."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    nodes: list[ast.stmt] = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If | ast.Try):
            nodes.extend([*node.body, *node.orelse])
            if isinstance(node, ast.Try):
                nodes.extend(stmt for handler in node.handlers for stmt in handler.body)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = node.module or ""
            if node.level:
                target = f"{base}.{target}" if target else base
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {
    name: {m for m in imports_of(path) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


def test_the_graph_sees_the_package() -> None:
    assert {"r9s_async._transport", "r9s_async._async_client"} <= set(MODULES)
    assert "r9s_async._transport" in GRAPH["r9s_async._async_client"]


def test_no_module_of_the_package_imports_itself_through_a_circle() -> None:
    # __init__ re-exports everything; a private module importing the package root is a cycle.
    circles = []
    for start in GRAPH:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in GRAPH[node]:
                if nxt == start:
                    circles.append(" -> ".join([*path, nxt]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))

    assert [] == circles


def test_only_the_transport_and_the_test_double_import_aiohttp() -> None:
    importers = {
        name
        for name, path in MODULES.items()
        if any(m == "aiohttp" or m.startswith("aiohttp.") for m in imports_of(path))
    }

    assert {"r9s_async._transport"} == {
        name for name in importers if not name.startswith("r9s_async.testing")
    }


def test_the_backfill_does_not_import_the_client() -> None:
    assert "r9s_async._async_client" not in GRAPH["r9s_async._backfill"]


def test_the_pure_core_imports_no_asyncio() -> None:
    core = ["_times", "_windows", "_body", "_retry", "_decode", "_converter", "_exceptions"]
    uses_asyncio = [name for name in core if "asyncio" in imports_of(MODULES[f"r9s_async.{name}"])]

    assert [] == uses_asyncio


def class_lengths() -> dict[str, int]:
    return {
        f"{name}.{node.name}": (node.end_lineno or 0) - node.lineno + 1
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    }


def test_no_class_is_over_about_350_lines() -> None:
    lengths = class_lengths()

    assert {} == {name: length for name, length in lengths.items() if length > 360}


def test_the_async_client_is_a_thin_face_of_about_300_lines() -> None:
    # Settings, lifecycle, the public methods; the attempt loop is _attempts.py's.
    assert class_lengths()["r9s_async._async_client.AsyncClient"] <= 320
