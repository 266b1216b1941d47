"""Production modules hold production code: every function, class and method in server/ is used by server/.

A helper only tests call (an oracle, a second way to do what the server does once) lives in
tests/harness/; one nothing calls is deleted. Found by name: a definition whose name nothing in server/
or dev_run.py refers to (an import or a re-export in `__all__` alone is not a use). A name that is
also a common word elsewhere (`join`) escapes it: the check is a net, not a proof.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Called by a framework or the standard library by name, never by our own code.
HOOKS = {
    "get", "head", "post", "put", "patch", "delete",  # Flask-RESTful Resource verbs
    "handle_error",  # flask_restful.Api
    "version_string",  # http.server's Server header
    "connection_dropped",  # werkzeug's request handler
    "_create_client_socket",  # python3-gearman's connection factory
}  # fmt: skip
# Test-only on purpose, each for a reason the code says.
KEPT = {
    "to_env",  # Config.from_env's inverse, beside it so the two cannot drift
    # The object store's interface (server/store/objects.py, s3.py), tested on both backends by
    # tests/integration/test_object_store.py; the pipeline moves onto it next (issue 17), then these leave.
    "download", "presign_get", "presign_put",
}  # fmt: skip


def sources() -> dict[Path, ast.Module]:
    paths = [*sorted((ROOT / "server").rglob("*.py")), ROOT / "dev_run.py"]
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in paths if path.exists()}


def test_every_definition_in_server_is_used_by_server():
    trees = sources()
    used: set[str] = set()
    for tree in trees.values():
        exports = [n.value for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "__all__"]
        skipped = {id(c) for e in exports for c in ast.walk(e)}  # a re-export is not a use
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                used.add(node.value)  # getattr(module, "name"), entry points
    for conf in (ROOT / "deploy").glob("*.py"):  # gunicorn's app names: 'server:create_events_app()'
        used.update(re.findall(r"server:(\w+)", conf.read_text(encoding="utf-8")))
    unused = []
    for path, tree in trees.items():
        if not path.is_relative_to(ROOT / "server"):
            continue
        defined = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
        defined += [m for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body if isinstance(m, ast.FunctionDef)]
        for node in defined:
            name = node.name
            if name.startswith("__") or name in HOOKS or name in KEPT or name in used:
                continue
            unused.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert unused == [], "defined in server/ but used by nothing there (move it to tests/harness/ or delete it)"
