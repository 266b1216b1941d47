"""The middle layer's shape (docs/workers.md "Layers"): imports only go down, and every module has a layer."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "server"

LAYERS: list[tuple[str, set[str]]] = [
    (
        "pure",
        {
            "server.transcode",
            "server.playlists",
            "server.retry",
            "server.clock",
            "server.config",
            "server.errors",
            "server.ingest_health",
        },
    ),
    (
        "infrastructure",
        {"server.db", "server.models", "server.media", "server.cache", "server.jobs", "server.services", "server.metrics"},
    ),
    (
        "domain",
        {
            "server.eventlog",
            "server.changes",
            "server.state",
            "server.lifecycle",
            "server.packaging",
            "server.publishing",
            "server.workers",
        },
    ),
    (
        "application",
        {
            "server.ingest",
            "server.encoding",
            "server.origin",
            "server.remote_origin",
            "server.reaper",
            "server.work",
            "server.answers",
            "server.checks",
            "server.dashboard",
            "server.eventfeed",
            "server.phone",
            "server.purge",
            "server.webhooks",
        },
    ),
    ("edges", {"server", "server.api", "server.segment_processor", "server.cli"}),
]


def layer_of(module: str) -> int:
    """The index of the layer `module` belongs to (its longest listed prefix)."""
    best: tuple[int, int] | None = None
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to docs/workers.md and this test"
    return best[0]


def modules() -> dict[str, Path]:
    found = {}
    for path in SERVER.rglob("*.py"):
        parts = path.relative_to(SERVER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("server"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules())
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("server"))
    return names


def test_every_server_module_imports_only_its_layer_and_below():
    wrong = []
    for module, path in sorted(modules().items()):
        mine = layer_of(module)
        for imported in sorted(imports(path)):
            if imported == "server" and module != "server":
                continue  # `from server import x` names a module, checked as server.x
            if layer_of(imported) > mine:
                wrong.append(f"{module} ({LAYERS[mine][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})")
    assert wrong == []


def test_the_job_transport_knows_no_handlers():
    # server/jobs moves bytes to workers; what a job does lives above it (server/work.py).
    for module, path in modules().items():
        if module.startswith("server.jobs"):
            assert not {i for i in imports(path) if not i.startswith("server.jobs")}, module
