"""The origin study's JSON schema loads unchanged; mistakes get one line naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmrseg.config import ExperimentConfig, apply_overrides, config_from_dict, load_config
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


def test_config_has_three_parts_and_the_resume_check_compares_the_training_part() -> None:
    from cmrseg import runs
    from cmrseg.config import PredictionConfig, RuntimeConfig, TrainingConfig

    parts = [set(part.model_fields) for part in (TrainingConfig, PredictionConfig, RuntimeConfig)]
    assert set().union(*parts) == set(ExperimentConfig.model_fields) and sum(map(len, parts)) == len(ExperimentConfig.model_fields)
    assert {"tta", "tta_scales", "postprocess"} == parts[1] and {"threads", "device", "num_workers"} <= parts[2]
    saved = config_from_dict({"epochs": 3, "tta": False, "threads": 1})
    assert saved.prediction.tta is False and saved.runtime.threads == 1 and saved.training.epochs == 3
    other_run = config_from_dict({"epochs": 3, "tta": True, "tta_scales": [0.9, 1.0], "threads": 4, "device": "cpu"})
    assert runs.same_training(saved, other_run)
    assert not runs.same_training(saved, config_from_dict({"epochs": 3, "seed": 1}))
    assert not runs.same_training(saved, config_from_dict({"epochs": 5})) and runs.same_training(
        saved, config_from_dict({"epochs": 5}), extend_epochs=True)


def test_a_flat_config_json_of_an_earlier_run_loads_and_is_written_back_flat(tmp_path: Path) -> None:
    from cmrseg import runs

    flat = {"epochs": 2, "batch_size": 4, "model_info": {"name": "UNet", "features": 8}, "tta": True,
            "tta_scales": [1.0], "threads": 2, "device": "cpu", "checkpoint_every": 5}
    (tmp_path / runs.CONFIG_FILE).write_text(json.dumps(flat))
    config = runs.read_run_config(tmp_path)
    assert config.tta and config.threads == 2 and config.model_info.features == 8
    runs.write_run_config(tmp_path, config)
    written = json.loads((tmp_path / runs.CONFIG_FILE).read_text())
    assert {key: written[key] for key in flat} == {**flat, "model_info": written["model_info"]}
    assert "training" not in written and written["model_info"]["features"] == 8


def test_library_errors_name_the_parameter_and_the_command_line_names_the_flag() -> None:
    from cmrseg.commands.common import error_text

    from cmrseg.config import parse_assignment

    with pytest.raises(CmrsegError) as caught:
        parse_assignment("epochs")
    assert str(caught.value) == "override 'epochs': expected KEY=VALUE" and "--" not in str(caught.value)
    assert error_text(caught.value) == "override 'epochs': expected KEY=VALUE (--set)"
    assert error_text(CmrsegError("epochs must be at least 1, got 0", key="epochs")) == "--epochs must be at least 1, got 0"
    assert error_text(CmrsegError("plain message")) == "plain message"
