"""The front door stays short and every setting stays findable from it in one click."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from server.config import Config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"


def test_the_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert targets and all((ROOT / target).exists() for target in targets), targets
    assert "docs/operations.md#environment" in text


def test_every_setting_is_in_the_environment_table():
    table = OPERATIONS.read_text().split("## Environment", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.M))
    settings = {field.name for field in dataclasses.fields(Config) if field.name.isupper()}
    assert settings - documented == set()
