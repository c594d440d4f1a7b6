"""Sweep grids: the ``--set KEY=V1,V2,...`` syntax, the choices it expands to and their folder names."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmrseg.config import ExperimentConfig, apply_overrides, parse_override_value
from cmrseg.errors import CmrsegError

RUNS_DIR = "runs"


def split_choices(raw: str) -> list[str]:
    """Split ``V1,V2,...`` at commas outside brackets, braces and quotes (so JSON lists stay whole)."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(raw):
        if quote:
            quote = "" if char == quote and raw[index - 1] != "\\" else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(raw[start:index])
            start = index + 1
    parts.append(raw[start:])
    return [part.strip() for part in parts]


def parse_sets(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["optimizer_info.lr=1e-1,1e-2"]`` -> ``{"optimizer_info.lr": [0.1, 0.01]}``, checked for mistakes."""
    if not items:
        raise CmrsegError("a sweep needs at least one choice KEY=V1,V2,...", key="overrides")
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise CmrsegError(f"choice '{item}': expected KEY=V1,V2,...", key="overrides")
        if key in grid:
            raise CmrsegError(f"choices: key '{key}' is given twice", key="overrides")
        choices = split_choices(raw)
        if any(not choice for choice in choices):
            raise CmrsegError(f"choice '{item}': empty value in the list", key="overrides")
        grid[key] = [parse_override_value(choice) for choice in choices]
    return grid


def value_text(value: Any) -> str:
    """Short readable form of a value: a transform list as ``Flip+Affine``, JSON for the rest."""
    if isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
        return "+".join(str(v["name"]) for v in value) or "[]"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    leaves = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(keys, leaves)}


def choice_slug(label: str) -> str:
    """Folder name of a choice: its label with unsafe characters replaced, hashed when over 60 characters."""
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "-", label).strip("-.")
    if len(slug) > 60:
        slug = f"{slug[:50]}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
    return slug or "choice"


@dataclass
class Trial:
    """One choice of the grid: its label, run folder and full config."""

    label: str
    values: dict[str, Any]
    run_dir: Path
    config: ExperimentConfig


def expand_grid(base: ExperimentConfig, grid: dict[str, list[Any]], sweep_dir: Path) -> list[Trial]:
    """Every combination of the grid as a validated config (a bad key, value or model setting fails before any training)."""
    from cmrseg.models import check_model_info

    short = _short_keys(list(grid))
    trials, seen = [], set()
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        label = " ".join(f"{short[key]}={value_text(value)}" for key, value in values.items())
        slug = choice_slug(label.replace(" ", "_"))
        if slug in seen:
            raise CmrsegError(f"choices: choice '{label}' appears twice", key="overrides")
        seen.add(slug)
        config = apply_overrides(base, values)
        check_model_info(config.model_info)
        trials.append(Trial(label, values, sweep_dir / RUNS_DIR / slug, config))
    return trials
