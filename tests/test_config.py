"""The origin study's JSON schema loads unchanged; mistakes get one line naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmrseg.config import apply_overrides, load_config
from cmrseg.errors import CmrsegError

REPO = Path(__file__).resolve().parent.parent

ORIGIN_STYLE = {
    "epochs": 100,
    "batch_size": 16,
    "dataset_info": {"train_data_path": "data/train", "val_data_path": "data/val", "test_data_path": "data/test"},
    "model_info": {"name": "DeepLab_v3", "input_channels": 3, "depths": 4, "backbone": "drn", "model_path": "model.pt"},
    "optimizer_info": {"name": "SGD", "lr": 0.01, "weight_decay": 1e-8, "momentum": 0.9},
    "criterion_info": {"name": "DiceFocal"},
}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(data))
    return path


def test_origin_schema_loads_unchanged(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ORIGIN_STYLE))
    assert config.model_info.backbone == "drn" and config.optimizer_info.name == "SGD"
    assert config.criterion_info.name == "DiceFocal" and config.epochs == 100
    assert Path(config.dataset_info.train_data_path).is_absolute()


def test_shipped_configs_are_valid() -> None:
    for path in sorted((REPO / "configs").glob("*.json")):
        load_config(path)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"epoch": 3}, "unknown key 'epoch'"),
        ({"model_info": {"name": "UNet", "colour": 1}}, "unknown key 'model_info.colour'"),
        ({"optimizer_info": {"name": "Adagrad"}}, "bad value for 'optimizer_info.name'"),
        ({"optimizer_info": {"name": "Adam", "lr": -1}}, "bad value for 'optimizer_info.lr'"),
        ({"criterion_info": {"name": "Hinge"}}, "bad value for 'criterion_info.name'"),
        ({"augmentation": "fancy"}, "unknown augmentation preset 'fancy'"),
        ({"postprocess": {"class_weights": [1, 2, 1]}}, r"'postprocess.class_weights'.*expected 4 positive numbers"),
        ({"postprocess": {"class_weights": [1, 0, 1, 1]}}, r"'postprocess.class_weights'.*expected 4 positive numbers"),
        ({"model_info": {"name": "UNet", "input_scale": 4}}, "bad value for 'model_info.input_scale'"),
        ({"tta_scales": [1.0, 3.0]}, r"bad value for 'tta_scales'.*zoom factors in \[0.5, 2\]"),
        ({"tta_scales": []}, "bad value for 'tta_scales'"),
        ({"criterion_info": {"name": "Dice", "label_smoothing": 0.1}}, "label_smoothing needs a loss with a cross-entropy term"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path: Path, patch: dict, message: str) -> None:
    with pytest.raises(CmrsegError, match=message) as info:
        load_config(_write(tmp_path, {**ORIGIN_STYLE, **patch}))
    assert "\n" not in str(info.value) and "cfg.json" in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(CmrsegError, match="config file not found"):
        load_config(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CmrsegError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")


def test_overrides_by_dotted_key(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ORIGIN_STYLE))
    changed = apply_overrides(config, {"optimizer_info.lr": 0.5, "epochs": 3})
    assert changed.optimizer_info.lr == 0.5 and changed.epochs == 3 and config.epochs == 100
    with pytest.raises(CmrsegError, match="unknown config key 'optimizer_info.rate'"):
        apply_overrides(config, {"optimizer_info.rate": 1})
