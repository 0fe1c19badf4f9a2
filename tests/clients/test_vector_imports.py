"""The vector-store modules' layering: a server deployment works without the Edge package, and no module
of orchestrator.clients imports (at any depth, in functions too) one that imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).parents[2]
CLIENTS = REPO / "orchestrator" / "clients"

_WITHOUT_EDGE = textwrap.dedent(
    """
    import asyncio, sys

    class NoEdge:
        def find_spec(self, name, path=None, target=None):
            if name == "qdrant_edge" or name.startswith("qdrant_edge."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoEdge())
    from qdrant_client import AsyncQdrantClient
    from orchestrator.clients.vector_factory import open_vector_store
    from orchestrator.clients.vectors import CollectionSpec
    from orchestrator.clients.vectors_qdrant import QdrantServerVectorStore
    import orchestrator.config, orchestrator.services

    async def main():
        store = QdrantServerVectorStore(AsyncQdrantClient(location=":memory:"))
        await store.ensure_collection("c", CollectionSpec(dense={"text": 2}))
        print("RESULT", await store.list_collections(), "qdrant_edge" in sys.modules, flush=True)
        await store.close()
        try:
            open_vector_store(__import__("pathlib").Path("."), None, None)
        except ModuleNotFoundError as exc:
            print("RESULT edge blocked:", exc, flush=True)

    asyncio.run(main())
    """
)


def test_the_server_adapter_imports_without_qdrant_edge() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _WITHOUT_EDGE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line[7:] for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines[0] == "['c'] False"  # it worked, and the Edge package was never loaded
    assert lines[1].startswith("edge blocked:")  # the blocker really blocks: the check can fail


def _imports(path: Path) -> set[str]:
    """Modules of orchestrator.clients that `path` imports anywhere (top level, functions, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found.update(n for n in names if n.startswith("orchestrator.clients.") and n.count(".") == 2)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in trail:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt in graph:
                walk(nxt, [*trail, nxt])

    for start in graph:
        walk(start, [start])
    return cycles


def test_no_import_cycle_among_the_clients() -> None:
    graph = {
        f"orchestrator.clients.{p.stem}": _imports(p) for p in CLIENTS.glob("*.py") if p.stem != "__init__"
    }
    assert _cycles(graph) == []
    adapters = {"orchestrator.clients.vectors_edge", "orchestrator.clients.vectors_qdrant"}
    importers = {module for module, deps in graph.items() if deps & adapters}
    assert importers == {"orchestrator.clients.vector_factory"}  # the factory alone picks an adapter


def test_the_cycle_check_can_fail() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) != []
