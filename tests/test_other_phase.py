"""Models that read the patient's other phase (``model_info.other_phase``): inputs, training, prediction, errors."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from cmrseg.cli import main
from cmrseg.config import config_from_dict
from cmrseg.data.slicing import load_folder
from cmrseg.data.synth import write_synthetic_dataset
from cmrseg.data.readers import list_cases, load_volume, read_volumes
from cmrseg.data.slicing import phase_partners
from cmrseg.errors import CmrsegError
from cmrseg.inference import PredictSettings, load_run
from cmrseg.inference.volume_prediction import volume_probabilities
from cmrseg.models import build_model

from conftest import run_onnx_example, tiny_config_dict, train_volume_run, volume_run_fixture

PAIRED_MODEL = {"name": "UNet", "depths": 2, "features": 8, "other_phase": True, "conditions": ["phase"]}
paired_run = volume_run_fixture("paired_run", PAIRED_MODEL, "A tiny phase-conditioned U-Net reading both phases.")


def test_the_config_counts_both_phases_stacks(tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(tmp_path, model_info=PAIRED_MODEL))
    assert config.model_info.image_channels == 2 and config.model_info.network_channels == 3
    assert build_model(config.model_info).input_channels == 3
    context = config_from_dict(tiny_config_dict(tmp_path, model_info={**PAIRED_MODEL, "context_slices": 1}))
    assert context.model_info.image_channels == 6 and context.model_info.network_channels == 7
    with pytest.raises(CmrsegError, match="input_channels must stay 1"):
        config_from_dict(tiny_config_dict(tmp_path, model_info={**PAIRED_MODEL, "input_channels": 2}))


def test_each_slice_carries_the_same_slice_of_the_other_phase(volumes_dir: Path) -> None:
    volumes = {v.case: v for v in read_volumes(volumes_dir)}
    partners = phase_partners(list(volumes.values()), lambda v: v.path)
    samples = load_folder(volumes_dir, other_phase=True)
    assert len(samples) == sum(v.n_slices for v in volumes.values())
    for sample in samples:
        volume, partner = volumes[sample.volume], partners[sample.volume]  # type: ignore[index]
        assert partner.patient == volume.patient and {partner.phase, volume.phase} == {"ED", "ES"}
        z = sample.slice_index
        assert sample.image.shape == (48, 48, 2)
        np.testing.assert_array_equal(sample.image[:, :, 0], volume.image[:, :, z])
        np.testing.assert_array_equal(sample.image[:, :, 1], partner.image[:, :, z])
        np.testing.assert_array_equal(sample.slice_image, volume.image[:, :, z])
    wide = load_folder(volumes_dir, context_slices=1, other_phase=True)
    middle = next(s for s in wide if s.slice_index == 1)
    own, other = volumes[middle.volume], partners[middle.volume]  # type: ignore[index]
    np.testing.assert_array_equal(middle.image[:, :, 0], own.image[:, :, 0])
    np.testing.assert_array_equal(middle.image[:, :, 5], other.image[:, :, 2])
    np.testing.assert_array_equal(middle.slice_image, own.image[:, :, 1])


def test_a_paired_model_predicts_volumes_from_both_phases(paired_run: Path, volumes_dir: Path, tmp_path: Path) -> None:
    assert main(["predict", "--run", str(paired_run), "--images", str(volumes_dir), "--out", str(tmp_path / "pred")]) == 0
    cases = list_cases(volumes_dir)
    assert all((tmp_path / "pred" / f"{case.case}.nii.gz").is_file() for case in cases)
    predictor, _ = load_run(paired_run, PredictSettings(tta=False))
    assert predictor.spec.other_phase and predictor.spec.network_channels == 3
    ed, es = load_volume(cases[0]), load_volume(cases[1])
    assert (ed.patient, ed.phase, es.phase) == (es.patient, "ED", "ES")
    with_partner = volume_probabilities(predictor, ed, partner=es)
    with_itself = volume_probabilities(predictor, ed, partner=ed)
    assert with_partner.shape == (4, 48, 48, ed.n_slices)
    assert float(np.abs(with_partner - with_itself).max()) > 1e-4
    with pytest.raises(CmrsegError, match="also reads the patient's other phase"):
        volume_probabilities(predictor, ed)
    with pytest.raises(CmrsegError, match="also reads the patient's other phase.*not a single slice"):
        predictor.predict_proba([ed.image[:, :, 0]], [np.array([-1.0])])
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--run", str(paired_run), "--data", str(volumes_dir), "--json", str(out)]) == 0
    assert '"ES"' in out.read_text()


def test_a_patient_without_the_other_phase_is_a_one_line_error(paired_run: Path, volumes_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    first = list_cases(volumes_dir)[0]
    shutil.copy(first.image_path, flat / "p1_ED.nii.gz")
    capsys.readouterr()
    assert main(["predict", "--run", str(paired_run), "--images", str(flat), "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "p1_ED.nii.gz" in err and "its ES volume is not in the folder" in err
    assert not (tmp_path / "pred").exists()
    pngs = write_synthetic_dataset(tmp_path / "png", count=2, seed=1, size=48)
    assert main(["predict", "--run", str(paired_run), "--images", str(pngs), "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other_phase" in err and "PNG slices" in err
    assert not (tmp_path / "p2").exists()


def test_phases_of_different_shapes_are_refused(volumes_dir: Path, tmp_path: Path) -> None:
    import nibabel as nib

    flat = tmp_path / "flat"
    flat.mkdir()
    first = list_cases(volumes_dir)[0]
    shutil.copy(first.image_path, flat / "p1_ED.nii.gz")
    image = nib.load(str(first.image_path))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:, :, :-1], image.affine), str(flat / "p1_ES.nii.gz"))
    with pytest.raises(CmrsegError, match=r"p1_(ED|ES)\.nii\.gz: shape .* differs from the other phase's"):
        load_folder(flat, require_masks=False, other_phase=True)


def test_export_and_ensemble_keep_the_other_phase(paired_run: Path, volumes_dir: Path, tmp_path: Path) -> None:
    plain = train_volume_run(volumes_dir, tmp_path / "plain", {"name": "UNet", "depths": 2, "features": 8})
    assert main(["ensemble", str(plain), str(paired_run), "--out", str(tmp_path / "mixed")]) == 0
    members = [load_run(run, PredictSettings(tta=False))[0] for run in (plain, paired_run)]
    mixed, _ = load_run(tmp_path / "mixed", PredictSettings(tta=False))
    assert mixed.spec.other_phase and mixed.spec.network_channels == 3
    ed, es = (load_volume(case) for case in list_cases(volumes_dir)[:2])
    expected = np.mean([volume_probabilities(member, ed, partner=es) for member in members], axis=0)
    np.testing.assert_allclose(volume_probabilities(mixed, ed, partner=es), expected, rtol=0, atol=1e-4)
    if importlib.util.find_spec("onnxruntime") is None:
        return
    out = tmp_path / "paired.onnx"
    assert main(["export", "--run", str(paired_run), "--out", str(out)]) == 0
    onnx_predictor, _ = load_run(out, PredictSettings(tta=False, engine="onnxruntime"))
    assert onnx_predictor.spec.other_phase
    np.testing.assert_allclose(volume_probabilities(onnx_predictor, ed, partner=es),
                               volume_probabilities(members[1], ed, partner=es), rtol=0, atol=1e-4)
    example = run_onnx_example(out, tmp_path)
    assert example.returncode != 0 and "reads both phases" in example.stderr
