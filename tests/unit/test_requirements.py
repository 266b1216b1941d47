"""Every library the server imports is installed by requirements.txt's runtime section, not only by the
tests' (a deploy that installs the runtime pins alone must run)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def runtime_pins() -> set[str]:
    """The distributions pinned above the "# Tests" header of requirements.txt."""
    runtime = ROOT.joinpath("requirements.txt").read_text(encoding="utf-8").split("\n# Tests", 1)[0]
    lines = (line.split("#", 1)[0].strip() for line in runtime.splitlines())
    return {_name(re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0]) for line in lines if line}


def installed_by(pins: set[str]) -> set[str]:
    """The pins and everything they require (their non-optional dependencies), transitively."""
    found, todo = set(), list(pins)
    while todo:
        dist = todo.pop()
        if dist in found:
            continue
        found.add(dist)
        try:
            needs = requires(dist) or []
        except PackageNotFoundError:
            continue
        todo += [_name(re.split(r"[=<>!~\[;( ]", need, maxsplit=1)[0]) for need in needs if "extra ==" not in need]
    return found


def imported_libraries() -> set[str]:
    """Top-level names of what server/ imports, the standard library and server itself aside."""
    names = set()
    for path in (ROOT / "server").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue  # a type checker's import, never made at run time
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"server", "__future__"}


def test_every_library_the_server_imports_is_a_runtime_requirement():
    installed = installed_by(runtime_pins())
    distributions = packages_distributions()
    missing = sorted(
        f"{module} ({', '.join(distributions.get(module, ['?']))})"
        for module in imported_libraries()
        if not any(_name(d) in installed for d in distributions.get(module, []))
    )
    assert missing == [], "imported by server/ but not installed by the runtime section of requirements.txt"
