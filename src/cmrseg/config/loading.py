"""Reading a config: validation with one-line errors, JSON files (data paths made absolute), the run folder's
``config.json`` and ``KEY=VALUE`` overrides (the command line's ``--set``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cmrseg.config.experiment import ExperimentConfig
from cmrseg.config.training import DatasetInfo
from cmrseg.errors import CmrsegError


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    if first["type"] == "missing":
        return f"{source}: missing key '{key}'"
    given = first.get("input")
    given_text = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{source}: bad value for '{key}': {first['msg']}{given_text}"


def config_from_dict(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a config dictionary; a bad key or value raises a one-line :class:`CmrsegError`."""
    if not isinstance(data, dict):
        raise CmrsegError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise CmrsegError(_format_validation_error(err, source)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a JSON config file; data paths are made absolute."""
    path = Path(path)
    if not path.is_file():
        raise CmrsegError(f"{path}: config file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CmrsegError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    config = config_from_dict(data, source=str(path))
    return resolve_paths(config, path.parent)


def _resolve(value: str | None, base: Path) -> str | None:
    if value is None or "://" in value:
        return value
    candidate = Path(value).expanduser()
    if candidate.is_absolute() or candidate.exists() or not (base / candidate).exists():
        return str(candidate.resolve())
    return str((base / candidate).resolve())


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Make every path in the config absolute (cwd first, then relative to ``base``)."""
    info = config.dataset_info
    dataset = DatasetInfo(**{key: _resolve(getattr(info, key), base) for key in DatasetInfo.model_fields})
    model = config.model_info.model_copy(
        update={"model_path": _resolve(config.model_info.model_path, base),
                "pretrained": _resolve(config.model_info.pretrained, base)}
    )
    return config.model_copy(update={"dataset_info": dataset, "model_info": model})


def parse_override_value(raw: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, null, lists), the plain string otherwise."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_assignment(item: str) -> tuple[str, Any]:
    """``"optimizer_info.lr=1e-3"`` -> ``("optimizer_info.lr", 0.001)``; a missing ``=`` is a one-line error."""
    if "=" not in item:
        raise CmrsegError(f"override '{item}': expected KEY=VALUE", key="overrides")
    key, raw = item.split("=", 1)
    return key, parse_override_value(raw)


def load_config_with_overrides(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load the config at ``path`` and apply ``KEY=VALUE`` overrides (the command line's ``--set``)."""
    config = load_config(path)
    return apply_overrides(config, dict(parse_assignment(item) for item in overrides)) if overrides else config


def apply_overrides(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """Return a copy with dotted keys replaced (``optimizer_info.lr`` -> 1e-3), re-validated."""
    data = config.model_dump()
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise CmrsegError(f"unknown config key '{dotted}'")
            node = node[part]
        if leaf not in node and not (parents and parents[-1] == "options"):
            raise CmrsegError(f"unknown config key '{dotted}'")
        node[leaf] = value
    return config_from_dict(data, source="overrides")
