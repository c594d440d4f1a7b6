"""The input spec (:mod:`cmrseg.data.input_spec`): one function builds the network's tensor for training and
prediction, and the spec round-trips through the run folder, the export zip and the ONNX metadata; runs and
``.onnx`` files from before the spec still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cmrseg import runs
from cmrseg.config import config_from_dict
from cmrseg.constants import NUM_CLASSES
from cmrseg.data.dataset import SegmentationDataset
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.normalization import Normalization
from cmrseg.data.readers import read_volumes
from cmrseg.data.slicing import phase_partners
from cmrseg.errors import CmrsegError
from cmrseg.inference import ModelPredictor
from cmrseg.inference.volume_prediction import volume_probabilities
from cmrseg.models import build_model
from cmrseg.planning import Plan

from conftest import tiny_config_dict

MODEL = {"name": "UNet", "depths": 2, "features": 8, "context_slices": 1, "other_phase": True,
         "conditions": ["phase", "position"]}
PLAN = Plan(target_spacing=[1.6, 1.6], patch_size=[32, 32], batch_size=4, intensity="test", reasons={"batch_size": "x"})


class _Recorder(nn.Module):
    """A network that records every input tensor it is given and answers all-zero scores."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return torch.zeros(x.shape[0], NUM_CLASSES, *x.shape[2:])


def test_training_and_prediction_build_bit_identical_tensors(volumes_dir: Path) -> None:
    spec = InputSpec(1, True, ("phase", "position"), Normalization("dataset", 0.31, 0.17))
    samples = spec.read_samples(volumes_dir)
    dataset = SegmentationDataset(samples, spec)
    ids = [sample.id for sample in samples]
    volumes = read_volumes(volumes_dir)
    partners = phase_partners(volumes, lambda v: v.path)
    recorder = _Recorder()
    predictor = ModelPredictor(recorder, spec, torch.device("cpu"), batch_size=64)
    volume = volumes[1]
    volume_probabilities(predictor, volume, None, partners[volume.case])
    seen = torch.cat(recorder.inputs)
    assert seen.shape == (volume.n_slices, spec.network_channels, 48, 48) and spec.network_channels == 8
    for z in range(volume.n_slices):
        trained, _ = dataset[ids.index(volume.slice_id(z))]
        assert trained.dtype == seen.dtype == torch.float32
        assert torch.equal(trained, seen[z]), f"slice {z}: training and prediction tensors differ"


def test_the_spec_refuses_inputs_it_does_not_read() -> None:
    spec = InputSpec(context_slices=1)
    with pytest.raises(CmrsegError, match=r"2\.5-D \(context_slices 1\).*not a single slice"):
        spec.channels_first(np.zeros((8, 8), np.uint8))
    with pytest.raises(CmrsegError, match="conditioned on phase"):
        InputSpec(conditions=("phase",)).condition_values(1, None)
    assert InputSpec(context_slices=2, other_phase=True, conditions=("position",)).network_channels == 11


def test_the_spec_round_trips_through_its_dict_and_refuses_a_newer_one() -> None:
    spec = InputSpec(1, True, ("phase",), Normalization("per_image"), PLAN)
    assert InputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(CmrsegError, match=r"^model\.onnx: not a valid input spec .*version 99 is newer"):
        InputSpec.from_dict({**spec.to_dict(), "version": 99}, source="model.onnx")
    with pytest.raises(CmrsegError, match="'conditions' must be a list of phase, position"):
        InputSpec.from_dict({**spec.to_dict(), "conditions": ["heart_rate"]})


def _fake_run(root: Path, data_dir: Path, plan: Plan | None) -> tuple[Path, InputSpec]:
    """A run folder as training writes it (config, input spec, untrained weights), without training."""
    config = config_from_dict(tiny_config_dict(data_dir, model_info=MODEL))
    spec = InputSpec.from_config(config.model_info).fitted(Normalization("dataset", 0.25, 0.5), plan)
    root.mkdir(parents=True)
    (root / runs.CONFIG_FILE).write_text(json.dumps(config.model_dump(mode="json")))
    runs.write_input_spec(root, spec)
    model = build_model(config.model_info)
    runs.save_weights(root / runs.BEST_CHECKPOINT, model.state_dict(), config.model_info, spec.normalization, epoch=0)
    return root, spec


def test_the_spec_round_trips_through_the_run_folder_and_the_zip(volumes_dir: Path, tmp_path: Path) -> None:
    from cmrseg.workflows.export import export_run
    from cmrseg.inference import load_run

    run, spec = _fake_run(tmp_path / "run", volumes_dir, PLAN)
    assert runs.read_input_spec(run) == spec and spec.plan == PLAN and spec.target_spacing == [1.6, 1.6]
    assert load_run(run)[0].spec == spec
    bundle = export_run(run, tmp_path / "model.zip")
    assert runs.read_input_spec(runs.require_run_dir(bundle)) == spec
    assert load_run(bundle)[0].spec == spec


def test_a_run_from_before_plans_loads_with_no_plan(volumes_dir: Path, tmp_path: Path) -> None:
    run, spec = _fake_run(tmp_path / "old", volumes_dir, None)
    assert not (run / runs.PLAN_FILE).exists()
    loaded = runs.read_input_spec(run)
    assert loaded == spec and loaded.plan is None and loaded.target_spacing is None and loaded.context_slices == 1


def test_the_spec_round_trips_through_onnx_metadata_and_old_loose_keys_still_load() -> None:
    from cmrseg.formats.onnx import META_PREFIX, onnx_metadata, spec_from_metadata

    spec = InputSpec(1, True, ("phase", "position"), Normalization("dataset", 0.25, 0.5), PLAN)
    props = {key[len(META_PREFIX):]: value for key, value in onnx_metadata(spec, {"tta": True}).items()}
    assert spec_from_metadata("new.onnx", props) == spec
    assert "normalization" not in props and "plan" not in props and "context_slices" not in props["prediction"]
    old = {"format": "cmrseg-model", "normalization": json.dumps(spec.normalization.to_dict()),
           "prediction": json.dumps({"tta": True, "context_slices": 1, "other_phase": True,
                                     "conditions": ["phase", "position"]}),
           "plan": json.dumps(PLAN.model_dump(mode="json"))}
    assert spec_from_metadata("old.onnx", old) == spec
    oldest = {"format": "cmrseg-model", "normalization": json.dumps({"mode": "per_image", "mean": 0.0, "std": 1.0}),
              "prediction": json.dumps({"tta": False})}
    assert spec_from_metadata("oldest.onnx", oldest) == InputSpec(normalization=Normalization("per_image"))
    with pytest.raises(CmrsegError, match=r"^bad\.onnx: broken cmrseg metadata"):
        spec_from_metadata("bad.onnx", {**old, "prediction": json.dumps({"other_phase": "yes"})})
