"""The architecture, enforced: the folders of server/ are the layers, and imports only go down.

The table is docs/architecture.md's "Layers" table, read from that file, so the document and the
rule cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "server"
DOC = ROOT / "docs" / "architecture.md"


def module_of(path: str) -> str:
    """`server/core/` -> `server.core`; `server/cli.py` -> `server.cli`."""
    return path.strip("/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def layers() -> list[tuple[str, set[str]]]:
    """The rows of docs/architecture.md's layers table, bottom first: (layer, its folders as module prefixes)."""
    rows = []
    in_table = False
    for line in DOC.read_text().splitlines():
        if line.startswith("| Layer |"):
            in_table = True
            continue
        if in_table and line.startswith("|---"):
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table:
            name, folders = (cell.strip() for cell in line.strip("|").split("|")[:2])
            rows.append((name, {module_of(folder) for folder in re.findall(r"`([^`]+)`", folders)}))
    return rows


LAYERS = layers()


def layer_of(module: str) -> int:
    """The index of the layer `module` belongs to (its longest listed prefix)."""
    best: tuple[int, int] | None = None
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add its folder to docs/architecture.md"
    return best[0]


def modules() -> dict[str, Path]:
    found = {}
    for path in SERVER.rglob("*.py"):
        parts = path.relative_to(SERVER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """Every server module `path` imports, at the top or inside a function (a lazy import is still a dependency)."""
    names = set()
    known = modules()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("server"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("server"))
    return names


def test_the_table_names_every_folder_of_server():
    folders = {p.parent for p in SERVER.rglob("__init__.py")} - {SERVER}
    top = {p.relative_to(SERVER).parts[0] for p in folders}
    listed = {prefix.split(".")[1] for _name, prefixes in LAYERS for prefix in prefixes if prefix.count(".") >= 1}
    assert top <= listed
    assert [name for name, _ in LAYERS][:2] == ["pure", "store"]


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
    # server/infra/queue.py moves bytes to workers; what a job does lives above it (server/worker/).
    assert {i for i in imports(SERVER / "infra" / "queue.py")} <= {"server.config"}


def loaded_by(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running `code` in the repo."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_importing_the_pure_core_loads_no_framework():
    loaded = loaded_by("import server.core.transcode.ffmpeg, server.core.playlists.publish, server.core.wire, server.core.retry")
    assert not loaded & {"flask", "werkzeug", "sqlalchemy", "pymysql", "gearman", "pymemcache", "requests", "prometheus_client"}


def test_the_remote_worker_s_modules_load_no_database_web_or_template_side():
    # The fast form of test_remote_workers' check (which reads a real remote worker's modules at exit).
    loaded = loaded_by("import server.segment_processor, server.worker.remote, server.worker.encoding")
    assert not loaded & {"sqlalchemy", "pymysql", "flask", "werkzeug", "jinja2", "alembic", "boto3"}
