"""Export (#14): the zip and ONNX formats, onnxruntime parity with torch, and one-line errors for bad files."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cmrseg.cli import main
from cmrseg.config import config_from_dict
from cmrseg.data.readers.png import list_images, load_image
from cmrseg.data.slicing import load_folder
from cmrseg.workflows.ensemble import make_ensemble
from cmrseg.errors import CmrsegError
from cmrseg.formats.bundle import MANIFEST_FILE
from cmrseg.formats.onnx import require
from cmrseg.formats.version import FORMAT_VERSION
from cmrseg.workflows.export import export_run
from cmrseg.inference import ModelPredictor, PredictSettings, load_run, predict_masks
from cmrseg.inference.onnx_engine import onnx_predictor_from_torch
from cmrseg.training.trainer import train

from conftest import REPO_ROOT, real_data_dir, tiny_config_dict

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-4
CPU = PredictSettings(device="cpu")
TTA_CASES = {"none": (False, (1.0,)), "flips": (True, (1.0,)), "zoom_flips": (True, (0.9, 1.0, 1.1))}
MODELS = {
    "unet": {"model_info": {"name": "UNet", "depths": 2, "features": 8, "input_scale": 2}},
    "deeplab": {"model_info": {"name": "DeepLab_v3", "options": {"width_multiplier": 0.25}}},
}


@pytest.fixture(scope="module", autouse=True)
def _export_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Unpack export zips into a test folder, not the user's cache."""
    previous = os.environ.get("CMRSEG_CACHE")
    os.environ["CMRSEG_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("CMRSEG_CACHE")
    else:
        os.environ["CMRSEG_CACHE"] = previous


@pytest.fixture(scope="module")
def model_runs(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny U-Net (the recipe's UNet with input_scale 2), a tiny DeepLab (1 epoch each) and their ensemble."""
    root = tmp_path_factory.mktemp("runs")
    built = {}
    for name, updates in MODELS.items():
        config = config_from_dict(tiny_config_dict(synth_dir, epochs=1, tta=True, tta_scales=[0.9, 1.0, 1.1], **updates))
        built[name] = train(config, root / name, progress=False).run_dir
    built["ensemble"] = make_ensemble([built["unet"], built["deeplab"]], root / "ensemble", weights=[2.0, 1.0])
    return built


@pytest.fixture(scope="module")
def engines(model_runs: dict[str, Path]) -> dict[str, tuple[ModelPredictor, ModelPredictor]]:
    """Per model: the torch predictor and the same network exported to ONNX and run by onnxruntime."""
    pairs = {}
    for name, run_dir in model_runs.items():
        torch_predictor, _ = load_run(run_dir, CPU)
        pairs[name] = (torch_predictor, onnx_predictor_from_torch(torch_predictor))
    return pairs


def _synthetic_images(synth_dir: Path) -> list[np.ndarray]:
    """64x64 phantoms plus crops whose sizes need the network's padding (odd, not multiples of 4)."""
    images = [s.image for s in load_folder(synth_dir)[:6]]
    return images + [images[0][:61, :57], images[1][3:, 5:], images[2][:50, :64]]


def assert_parity(reference: list[np.ndarray], candidate: list[np.ndarray]) -> None:
    """Probabilities within :data:`TOLERANCE`; argmax equal wherever torch's top two differ by more than it."""
    assert len(reference) == len(candidate)
    for ref, got in zip(reference, candidate, strict=True):
        assert ref.shape == got.shape
        assert np.abs(ref - got).max() <= TOLERANCE
        top_two = np.sort(ref, axis=0)[-2:]
        decisive = (top_two[1] - top_two[0]) > TOLERANCE
        assert decisive.mean() > 0.9
        assert np.array_equal(ref.argmax(0)[decisive], got.argmax(0)[decisive])


def _with_tta(predictor: ModelPredictor, case: str) -> ModelPredictor:
    tta, scales = TTA_CASES[case]
    return dataclasses.replace(predictor, tta=tta, tta_scales=scales)


@pytest.mark.parametrize("case", list(TTA_CASES))
@pytest.mark.parametrize("model", ["unet", "deeplab", "ensemble"])
def test_onnxruntime_matches_torch_on_synthetic_images(engines: dict, synth_dir: Path, model: str, case: str) -> None:
    torch_predictor, onnx_predictor = (_with_tta(p, case) for p in engines[model])
    images = _synthetic_images(synth_dir)
    assert_parity(torch_predictor.predict_proba(images), onnx_predictor.predict_proba(images))


@pytest.mark.parametrize("model", ["unet", "deeplab", "ensemble"])
def test_onnxruntime_matches_torch_on_the_real_test_set(engines: dict, model: str) -> None:
    data = real_data_dir()
    if data is None or not (data / "test" / "image").is_dir():
        pytest.skip("real cmr96 test images not found (set CMRSEG_DATA)")
    images = [load_image(path) for path in list_images(data / "test")[:12]]
    for case in ("none", "zoom_flips"):
        torch_predictor, onnx_predictor = (_with_tta(p, case) for p in engines[model])
        assert_parity(torch_predictor.predict_proba(images), onnx_predictor.predict_proba(images))


def test_zip_export_predicts_like_the_run_folder_and_carries_a_model_card(model_runs: dict, synth_dir: Path,
                                                                           tmp_path: Path) -> None:
    model_zip = export_run(model_runs["unet"], tmp_path / "unet.zip")
    with zipfile.ZipFile(model_zip) as archive:
        manifest = json.loads(archive.read(MANIFEST_FILE))
        card = json.loads(archive.read("model_card.json"))
        markdown = archive.read("MODEL_CARD.md").decode()
        names = set(archive.namelist())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["labels"] == ["background", "RV", "Myo", "LV"]
    assert manifest["prediction"]["tta_scales"] == [0.9, 1.0, 1.1]
    assert {"config.json", "normalization.json", "best.pt", "history.csv"} <= names
    assert card["architecture"] == "UNet" and card["parameters"] > 0 and card["training_data"]["images"] == 24
    assert card["metrics"]["epochs"] == 1 and "validation split" in card["metrics"]["how_measured"]
    assert card["intended_use"] and "Not a medical device" in card["limits"]
    assert "## Metrics" in markdown and "Parameters" in markdown
    images = [s.image for s in load_folder(synth_dir)[:4]]
    folder_predictor, folder_settings = load_run(model_runs["unet"], CPU)
    zip_predictor, zip_settings = load_run(model_zip, CPU)
    assert zip_settings == folder_settings
    np.testing.assert_array_equal(np.stack(zip_predictor.predict_proba(images)), np.stack(folder_predictor.predict_proba(images)))


def test_exported_zips_make_an_ensemble_and_export_again(model_runs: dict, tmp_path: Path, synth_dir: Path) -> None:
    zips = [export_run(model_runs[name], tmp_path / f"{name}.zip") for name in ("unet", "deeplab")]
    ensemble = make_ensemble(zips, tmp_path / "ensemble", weights=[2.0, 1.0])
    ensemble_zip = export_run(ensemble, tmp_path / "ensemble.zip")
    card = json.loads(zipfile.ZipFile(ensemble_zip).read("model_card.json"))
    assert card["ensemble_members"] == ["UNet", "DeepLab_v3"] and "no training history" in card["metrics"]["how_measured"]
    images = [s.image for s in load_folder(synth_dir)[:3]]
    expected, _ = load_run(model_runs["ensemble"], CPU)
    got, _ = load_run(ensemble_zip, CPU)
    np.testing.assert_allclose(np.stack(got.predict_proba(images)), np.stack(expected.predict_proba(images)), atol=1e-6)


def test_cli_onnx_export_predicts_the_torch_masks(model_runs: dict, synth_dir: Path, tmp_path: Path) -> None:
    import onnx

    model_onnx = tmp_path / "unet.onnx"
    assert main(["export", "--run", str(model_runs["unet"]), "--out", str(model_onnx)]) == 0
    graph = onnx.load(str(model_onnx))
    props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(props["cmrseg_input_spec"])["normalization"]["mode"] == "per_image"
    assert json.loads(props["cmrseg_labels"]) == ["background", "RV", "Myo", "LV"]
    assert props["cmrseg_format_version"] == str(FORMAT_VERSION) and props["cmrseg_opset"] == "18"
    assert json.loads(props["cmrseg_prediction"])["tta_scales"] == [0.9, 1.0, 1.1]
    assert any(op.version == 18 for op in graph.opset_import if op.domain in ("", "ai.onnx"))
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True]
    torch_out, onnx_out = tmp_path / "torch", tmp_path / "onnx"
    assert main(["predict", "--run", str(model_runs["unet"]), "--images", str(synth_dir), "--out", str(torch_out)]) == 0
    assert main(["predict", "--run", str(model_onnx), "--engine", "onnxruntime", "--images", str(synth_dir),
                 "--out", str(onnx_out)]) == 0
    for mask in sorted(torch_out.glob("*_mask.png")):
        np.testing.assert_array_equal(load_image(onnx_out / mask.name), load_image(mask))


def test_cli_evaluate_with_onnxruntime_scores_like_torch(model_runs: dict, synth_dir: Path, tmp_path: Path) -> None:
    scores = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / f"{engine}.json"
        assert main(["evaluate", "--run", str(model_runs["deeplab"]), "--data", str(synth_dir), "--no-tta",
                     "--engine", engine, "--json", str(out)]) == 0
        scores[engine] = json.loads(out.read_text())
    assert scores["onnxruntime"]["engine"] == "onnxruntime"
    assert scores["onnxruntime"]["dice"] == pytest.approx(scores["torch"]["dice"], abs=1e-3)


def test_onnxruntime_rejects_images_below_the_graph_minimum(engines: dict) -> None:
    _, onnx_predictor = engines["unet"]
    with pytest.raises(CmrsegError, match="smaller than the exported graph takes"):
        onnx_predictor.predict_proba([np.zeros((1, 1), dtype=np.uint8)])


def _expect_one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("cmrseg: error:") and match in err


def _rezip(source: Path, target: Path, manifest_update: dict) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == MANIFEST_FILE:
                data = json.dumps({**json.loads(data), **manifest_update}).encode()
            new.writestr(name, data)
    return target


def test_bad_exports_fail_with_one_line(model_runs: dict, synth_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    good = export_run(model_runs["unet"], tmp_path / "good.zip")
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("readme.txt", "holiday photos")
    newer = _rezip(good, tmp_path / "newer.zip", {"format_version": FORMAT_VERSION + 1})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    flipped = bytearray(good.read_bytes())
    offset = zipfile.ZipFile(good).getinfo("best.pt").header_offset + 200
    flipped[offset] ^= 0xFF
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(bytes(flipped))
    cases = {foreign: "not a cmrseg model export", newer: "newer cmrseg", truncated: "not a zip file",
             corrupt: "corrupt zip"}
    for path, match in cases.items():
        _expect_one_line_error(capsys, ["predict", "--run", str(path), "--images", str(synth_dir),
                                        "--out", str(tmp_path / "out")], match)
    assert not (tmp_path / "out").exists()


def test_onnx_with_broken_prediction_metadata_fails_with_one_line(model_runs: dict, synth_dir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    model = onnx.load(str(export_run(model_runs["unet"], tmp_path / "good.onnx", fmt="onnx")))
    for prop in model.metadata_props:
        if prop.key == "cmrseg_prediction":
            prop.value = "{not json"
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    for argv in (["evaluate", "--run", str(broken), "--engine", "onnxruntime", "--data", str(synth_dir)],
                 ["predict", "--run", str(broken), "--engine", "onnxruntime", "--images", str(synth_dir),
                  "--out", str(tmp_path / "out")]):
        _expect_one_line_error(capsys, argv, "broken.onnx: broken cmrseg metadata (JSONDecodeError")
    assert not (tmp_path / "out").exists()


def test_foreign_onnx_fails_with_one_line(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not protobuf at all\xff" * 10)
    for path, match in ((foreign, "no cmrseg metadata"), (garbage, "not a readable ONNX file")):
        _expect_one_line_error(capsys, ["predict", "--run", str(path), "--engine", "onnxruntime", "--images",
                                        str(synth_dir), "--out", str(tmp_path / "out")], match)
    _expect_one_line_error(capsys, ["predict", "--run", str(foreign), "--images", str(synth_dir),
                                    "--out", str(tmp_path / "out")], "runs with the onnxruntime engine (torch needs the run folder or zip) (--engine)")


def test_missing_onnx_packages_name_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(CmrsegError, match=r"pip install 'cmrseg\[onnx\]'"):
        require("onnxruntime")


def test_standalone_example_segments_a_png_like_cmrseg(model_runs: dict, synth_dir: Path, tmp_path: Path) -> None:
    script = REPO_ROOT / "examples" / "onnx_predict.py"
    assert "import cmrseg" not in script.read_text() and "from cmrseg" not in script.read_text()
    model_onnx = export_run(model_runs["unet"], tmp_path / "unet.onnx", fmt="onnx")
    for image_path in list_images(synth_dir)[:2]:
        mask_path = tmp_path / f"{image_path.stem}_mask.png"
        subprocess.run([sys.executable, str(script), str(model_onnx), str(image_path), str(mask_path)], check=True,
                       timeout=300, capture_output=True)
        predictor, settings = load_run(model_onnx, PredictSettings(tta=False, engine="onnxruntime"))
        expected = predict_masks(predictor, [load_image(image_path)], False, settings.class_weights)[0]
        np.testing.assert_array_equal(load_image(mask_path), expected)


@pytest.fixture(scope="module")
def volume_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two synthetic patients' NIfTI volumes (32x32), a tiny U-Net trained 1 epoch on them, and its zip export."""
    root = tmp_path_factory.mktemp("volumes")
    volumes = root / "volumes"
    assert main(["data", "synth", "--volumes", "--out", str(volumes), "--count", "2", "--size", "32"]) == 0
    config = config_from_dict(tiny_config_dict(volumes, epochs=1, postprocess={"largest_component": True}))
    run_dir = train(config, root / "run", progress=False).run_dir
    return volumes, run_dir, export_run(run_dir, root / "volume_model.zip")


def _label_volumes(folder: Path) -> dict[str, np.ndarray]:
    import nibabel as nib

    return {path.name: np.asarray(nib.load(str(path)).dataobj) for path in sorted(folder.glob("*.nii.gz"))}


def test_onnxruntime_predicts_the_torch_label_volumes(volume_export: tuple[Path, Path, Path], tmp_path: Path) -> None:
    volumes, run_dir, model_zip = volume_export
    outputs = {}
    for name, run, engine in (("torch", run_dir, "torch"), ("onnxruntime", run_dir, "onnxruntime"),
                              ("zip_onnxruntime", model_zip, "onnxruntime")):
        outputs[name] = tmp_path / name
        assert main(["predict", "--run", str(run), "--images", str(volumes), "--out", str(outputs[name]),
                     "--engine", engine]) == 0
    expected = _label_volumes(outputs["torch"])
    assert len(expected) == 4
    for name in ("onnxruntime", "zip_onnxruntime"):
        got = _label_volumes(outputs[name])
        assert got.keys() == expected.keys()
        for case, labels in expected.items():
            np.testing.assert_array_equal(got[case], labels)


def test_zip_carries_the_training_data_but_no_output_marker(volume_export: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from cmrseg.io.outputs import MARKER_FILE
    from cmrseg.inference.volume_prediction import training_spacing

    _, run_dir, model_zip = volume_export
    assert (run_dir / MARKER_FILE).is_file()
    names = set(zipfile.ZipFile(model_zip).namelist())
    assert "data.json" in names and MARKER_FILE not in names
    assert training_spacing(model_zip) == training_spacing(run_dir) is not None
    model_onnx = export_run(model_zip, tmp_path / "volume_model.onnx")
    assert training_spacing(model_onnx) == training_spacing(run_dir)


def test_export_output_is_checked_before_any_work(model_runs: dict, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = model_runs["unet"]
    before = sorted(p.name for p in run_dir.iterdir())
    (tmp_path / "folder.zip").mkdir()
    cases = {run_dir / "model.zip": "lies inside the input", tmp_path / "folder.zip": "is a folder",
             run_dir / "best.pt" / "x.onnx": "lies inside the input"}
    for out, match in cases.items():
        _expect_one_line_error(capsys, ["export", "--run", str(run_dir), "--out", str(out)], match)
    assert sorted(p.name for p in run_dir.iterdir()) == before
    model_zip = export_run(run_dir, tmp_path / "unet.zip")
    _expect_one_line_error(capsys, ["export", "--run", str(model_zip), "--out", str(model_zip)], "is the input")


def test_report_takes_a_zip_and_the_onnxruntime_engine(model_runs: dict, synth_dir: Path, tmp_path: Path) -> None:
    model_zip = export_run(model_runs["unet"], tmp_path / "unet.zip")
    page = tmp_path / "report.html"
    assert main(["report", str(model_zip), "--out", str(page), "--data", str(synth_dir), "--engine", "onnxruntime",
                 "--max-images", "2"]) == 0
    assert "Per-image Dice" in page.read_text()
