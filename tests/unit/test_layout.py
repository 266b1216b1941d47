"""Tests and benches share one harness package (issue 8): the imports that would split it again fail here.

Three rules, checked on the AST of every .py under tests/ and bench/ (and on Python code passed as a
string, such as a `python -c` a bench runs):
- nothing imports a `conftest` module: fixtures stay in conftest files, helpers live in tests/harness;
- bench/ imports nothing from `tests` but `tests.harness`;
- tests/harness/ imports nothing from `tests` but itself, so what bench reaches stays inside it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = "tests.harness"


def sources() -> list[Path]:
    """Return every Python file under tests/ and bench/ but this one (its examples break the rules on purpose)."""
    found = (p for top in ("tests", "bench") for p in (ROOT / top).rglob("*.py") if "node_modules" not in p.parts)
    return sorted(p for p in found if p != Path(__file__).resolve())


def module_name(path: Path) -> str:
    """Return the dotted module name of a file under ROOT (a package's __init__ is the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """Yield (line, dotted name) of everything `source` imports; `from a import b` yields `a.b`.

    Relative imports are resolved against `module`; code strings that parse as Python and import
    something (a `python -c` program) and `importlib.import_module("x")` calls count as imports too.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            yield from ((node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names)
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value:
            yield from ((node.lineno, name) for _line, name in _code_string_imports(node.value, module))


def _resolve(name: str, level: int, package: str) -> str:
    if level == 0:
        return name
    parts = package.split(".") if package else []
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _is_import_module(node: ast.Call) -> bool:
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in {"import_module", "__import__"}
    )


def _code_string_imports(text: str, module: str) -> Iterator[tuple[int, str]]:
    try:
        ast.parse(text)
    except SyntaxError:  # prose (a docstring), not a program
        return
    yield from imported_names(text, module)


def violations(path_in_repo: str, names: list[tuple[int, str]]) -> list[str]:
    """Return one message per import of `path_in_repo` (e.g. "bench/x.py") that breaks a layout rule."""
    found = []
    for line, name in names:
        where = f"{path_in_repo}:{line} imports {name}"
        if "conftest" in name.split("."):
            found.append(f"{where}: import the helper from {HARNESS}, fixtures stay in their conftest")
        elif _from_tests(name) and not _in_harness(name) and path_in_repo.startswith(("bench/", "tests/harness/")):
            found.append(f"{where}: bench and the harness may import only {HARNESS} from tests")
    return found


def _from_tests(name: str) -> bool:
    return name == "tests" or name.startswith("tests.")


def _in_harness(name: str) -> bool:
    return name == HARNESS or name.startswith(HARNESS + ".")


def check(path: Path) -> list[str]:
    names = list(imported_names(path.read_text(), module_name(path), path.name == "__init__.py"))
    return violations(path.relative_to(ROOT).as_posix(), names)


def test_no_conftest_imports_and_bench_uses_only_the_harness() -> None:
    files = sources()
    problems = [message for path in files for message in check(path)]
    assert problems == [], "\n".join(problems)
    assert any(p.parts[-2] == "bench" for p in files) and ROOT / "tests/harness/__init__.py" in files, "the walk missed a tree"


def _names(source: str, module: str) -> list[str]:
    return [name for _line, name in imported_names(source, module)]


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import tests.api.conftest", "tests.api.test_x", "tests.api.conftest"),
        ("from tests.api.conftest import upload", "tests.api.test_x", "tests.api.conftest.upload"),
        ("from tests.api import conftest", "tests.api.test_x", "tests.api.conftest"),
        ("from .conftest import upload", "tests.api.test_x", "tests.api.conftest.upload"),
        ("from . import conftest", "tests.api.test_x", "tests.api.conftest"),
        ("from ..integration.conftest import Stack", "tests.api.test_x", "tests.integration.conftest.Stack"),
        ("import importlib\nimportlib.import_module('tests.media')", "bench.x", "tests.media"),
        ("code = 'import sys; from tests.android import segment_upload; print(1)'", "bench.x", "tests.android.segment_upload"),
    ],
)
def test_every_form_of_import_is_seen(source: str, module: str, expected: str) -> None:
    assert expected in _names(source, module)


def test_prose_that_mentions_import_is_not_an_import() -> None:
    assert _names('"""Tests AND bench import it; nothing else in tests is imported by bench."""', "tests.harness") == []


@pytest.mark.parametrize(
    ("path", "name", "allowed"),
    [
        ("tests/api/test_x.py", "tests.api.conftest.upload", False),
        ("bench/x.py", "tests.integration.conftest.Stack", False),
        ("bench/x.py", "tests.media.make_segment", False),
        ("bench/x.py", "tests.services", False),
        ("bench/x.py", "tests", False),
        ("bench/x.py", "tests.harness.stack.Stack", True),
        ("bench/x.py", "tests.harness", True),
        ("bench/x.py", "tests.harnesses.x", False),
        ("bench/x.py", "server.core.transcode.ffmpeg", True),
        ("tests/harness/stack.py", "tests.e2e.players.play", False),
        ("tests/harness/stack.py", "tests.harness.services.wait_for", True),
        ("tests/api/test_x.py", "tests.harness.android.new_video_body", True),
    ],
)
def test_the_rules(path: str, name: str, allowed: bool) -> None:
    assert (violations(path, [(1, name)]) == []) is allowed
