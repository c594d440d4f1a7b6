"""The user docs stay true to the code: every verb's options in docs/commands.md, every config key in
docs/configs.md, every relative link pointing at a file, and the README's test command what CI runs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pydantic import BaseModel

from cmrseg.cli import build_parser
from cmrseg.config import ExperimentConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PENDING: set[str] = set()
"""Pages the docs may link to before they are written (none now)."""


def _verbs(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(_verbs(sub, f"{prefix}{name} "))
    return found


def test_commands_page_has_every_verb_and_option() -> None:
    text = (DOCS / "commands.md").read_text()
    sections = dict(re.findall(r"^## `cmrseg ([a-z ]+)`\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    verbs = {name: sub for name, sub in _verbs(build_parser()).items() if name not in ("data", "qc")}
    assert set(sections) == set(verbs)
    missing = [f"{name} {option}" for name, sub in verbs.items() for action in sub._actions
               for option in action.option_strings if option not in ("-h", "--help") and option not in sections[name]]
    assert not missing, missing


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        nested = [t for t in getattr(field.annotation, "__args__", (field.annotation,))
                  if isinstance(t, type) and issubclass(t, BaseModel) and t.__name__ != "TransformSpec"]
        for sub in nested:
            keys += _keys(sub, f"{prefix}{name}.")
    return keys


def test_configs_page_has_every_config_key() -> None:
    text = (DOCS / "configs.md").read_text()
    keys = _keys(ExperimentConfig)
    assert "model_info.context_slices" in keys and "scheduler.warmup_epochs" in keys
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, missing


def test_relative_links_point_at_files() -> None:
    pages = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *DOCS.glob("*.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            if not path.exists() and path.relative_to(ROOT).as_posix() not in PENDING:
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_readme_is_short_and_its_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    assert "bash scripts/test.sh" in readme and "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in (ROOT / "scripts" / "test.sh").read_text()
