"""The ``cmrseg`` command end to end, and its one-line errors with exit code 2 for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmrseg.cli import main
from cmrseg.data.slicing import load_folder
from cmrseg.runs import read_history

from conftest import tiny_config_dict


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "cmrseg.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "evaluate", "predict", "submit", "score", "data"):
        assert command in result.stdout


def test_synth_train_evaluate_predict_submit_score(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["data", "synth", "--out", str(tmp_path / "test"), "--count", "3", "--seed", "4", "--size", "64"], capsys)
    assert code == 0 and len(list((tmp_path / "test" / "image").iterdir())) == 3
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(tiny_config_dict(synth_dir, epochs=1)))
    code, out, _ = _run(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"], capsys)
    assert code == 0 and "best validation mean Dice" in out

    code, out, _ = _run(["evaluate", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "test"), "--json", str(tmp_path / "m.json")], capsys)
    assert code == 0 and "Dice" in out and "HD95" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["dice"]) == set(metrics["hd95"]) == {"RV", "Myo", "LV", "mean"}
    assert [row["id"] for row in metrics["per_image"]] == ["synth1", "synth2", "synth3"]

    code, out, _ = _run(["predict", "--run", str(tmp_path / "run"), "--images", str(tmp_path / "test" / "image"), "--out", str(tmp_path / "pred"), "--overlays"], capsys)
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "pred").iterdir() if p.name != ".cmrseg-output.json")
    assert (tmp_path / "pred" / ".cmrseg-output.json").is_file()
    assert names == sorted(["cases.csv"] + [f"synth{i}_mask.png" for i in (1, 2, 3)] + [f"synth{i}_overlay.png" for i in (1, 2, 3)])
    predicted = np.array(Image.open(tmp_path / "pred" / "synth1_mask.png"))
    assert predicted.shape == (64, 64) and predicted.max() <= 3
    assert np.array(Image.open(tmp_path / "pred" / "synth1_overlay.png")).shape == (64, 64, 3)

    code, out, _ = _run(["submit", "--masks", str(tmp_path / "pred"), "--out", str(tmp_path / "sub.csv")], capsys)
    assert code == 0 and (tmp_path / "sub.csv").read_text().startswith("id,encoding\nsynth1_mask1,")
    code, out, _ = _run(["score", "--submission", str(tmp_path / "sub.csv"), "--masks", str(tmp_path / "test")], capsys)
    assert code == 0
    dice_row = next(line for line in out.splitlines() if line.startswith("Dice"))
    assert float(dice_row.split()[-1]) == pytest.approx(metrics["dice"]["mean"], abs=1e-3)


def test_predictions_match_between_library_and_evaluate(slice_run: Path, synth_dir: Path) -> None:
    from cmrseg.evaluation import evaluate_run
    from cmrseg.inference import PredictSettings, load_run, predict_masks

    samples = load_folder(synth_dir)[:4]
    predictor, _ = load_run(slice_run)
    masks = predict_masks(predictor, [s.image for s in samples])
    tta_predictor, settings = load_run(slice_run, PredictSettings(tta=True))
    assert settings.tta and len(predict_masks(tta_predictor, [s.image for s in samples])) == 4
    summary = evaluate_run(slice_run, synth_dir)
    assert summary["n_images"] == 24 and all(m.shape == (64, 64) for m in masks)
    validation = evaluate_run(slice_run)
    history_best = max(row["dice_mean"] for row in read_history(slice_run))
    assert validation["n_images"] == 6 and validation["dice"]["mean"] == pytest.approx(history_best, abs=1e-6)


def test_evaluate_on_a_png_folder_reads_the_run_config_once(slice_run: Path, synth_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from cmrseg import runs
    from cmrseg.evaluation import evaluate_run

    reads: list[Path] = []
    read_config = runs.read_run_config
    monkeypatch.setattr(runs, "read_run_config", lambda run_dir: reads.append(Path(run_dir)) or read_config(run_dir))
    summary = evaluate_run(slice_run, synth_dir)
    assert summary["n_images"] == 24 and reads == [slice_run]


def test_predictor_runs_channels_last_and_matches_the_plain_forward(synth_dir: Path) -> None:
    import copy

    from cmrseg.config import ModelInfo
    from cmrseg.data.normalization import Normalization
    from cmrseg.data.input_spec import InputSpec
    from cmrseg.inference import ModelPredictor
    from cmrseg.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelInfo(name="UNet", depths=2, features=8, input_scale=2)).eval()
    reference = copy.deepcopy(model)
    predictor = ModelPredictor(model, InputSpec(normalization=Normalization("per_image")), torch.device("cpu"), batch_size=3)
    images = [s.image for s in load_folder(synth_dir)[:5]]
    assert next(p for p in predictor.model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        batch = torch.from_numpy(np.stack([predictor.spec.normalization.apply(image) for image in images])[:, None])
        expected = torch.softmax(reference(batch), dim=1).numpy()
    np.testing.assert_allclose(np.stack(predictor.predict_proba(images)), expected, atol=1e-5)


def test_class_weights_in_a_run_config_steer_predict_and_evaluate(slice_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    import shutil

    from cmrseg.evaluation import evaluate_run
    from cmrseg.inference import predict_folder

    weighted = tmp_path / "weighted"
    shutil.copytree(slice_run, weighted)
    config = json.loads((weighted / "config.json").read_text())
    config["postprocess"] = {"largest_component": False, "class_weights": [1e-6, 1e6, 1e-6, 1e-6]}
    (weighted / "config.json").write_text(json.dumps(config))
    paths = predict_folder(weighted, synth_dir / "image", tmp_path / "pred")
    assert all((np.array(Image.open(path)) == 1).all() for path in paths[:3])
    summary = evaluate_run(weighted, synth_dir)
    assert summary["class_weights"] == [1e-6, 1e6, 1e-6, 1e-6]
    assert summary["dice"]["Myo"] == 0.0 and summary["dice"]["LV"] == 0.0


def _bad_image_dir(tmp_path: Path, problem: str) -> Path:
    folder = tmp_path / problem
    (folder / "image").mkdir(parents=True)
    (folder / "mask").mkdir()
    image = np.zeros((16, 16), np.uint8)
    if problem == "corrupt":
        (folder / "image" / "cmr1.png").write_bytes(b"not an image")
    else:
        Image.fromarray(image).save(folder / "image" / "cmr1.png")
    if problem == "bad_mask_values":
        Image.fromarray(np.full((16, 16), 9, np.uint8)).save(folder / "mask" / "cmr1_mask.png")
    if problem == "size_mismatch":
        Image.fromarray(np.zeros((8, 16), np.uint8)).save(folder / "mask" / "cmr1_mask.png")
    return folder


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("corrupt", "cmr1.png: not a PNG file"),
        ("missing_mask", "cmr1.png: no mask found"),
        ("bad_mask_values", "cmr1_mask.png: mask values must be 0-3"),
        ("size_mismatch", "cmr1_mask.png: mask size"),
    ],
)
def test_bad_data_exits_2_with_one_line_and_no_output(slice_run: Path, tmp_path: Path, problem: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _bad_image_dir(tmp_path, problem)
    code, _, err = _run(["evaluate", "--run", str(slice_run), "--data", str(folder), "--json", str(tmp_path / "out.json")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "out.json").exists()


def test_predict_on_bad_folder_writes_nothing(slice_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "a.png")
    (folder / "b.png").write_text("hello")
    code, _, err = _run(["predict", "--run", str(slice_run), "--images", str(folder), "--out", str(tmp_path / "pred")], capsys)
    assert code == 2 and "b.png: not a PNG file" in err
    assert not (tmp_path / "pred").exists() and not list(tmp_path.glob(".pred*"))


def test_empty_folder_and_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["submit", "--masks", str(tmp_path / "empty"), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == 2 and "no mask PNGs found" in err and not (tmp_path / "s.csv").exists()
    code, _, err = _run(["train", "--config", str(tmp_path / "nope.json")], capsys)
    assert code == 2 and "nope.json: config file not found" in err
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 1, "dataset_info": {}}))
    code, _, err = _run(["train", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "missing key 'dataset_info.train_data_path'" in err
    assert not (tmp_path / "r").exists()


def test_checkpoint_of_another_model_is_rejected(slice_run: Path, tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(slice_run, other)
    checkpoint = torch.load(other / "best.pt", weights_only=True)
    checkpoint["model"] = {k: v for k, v in checkpoint["model"].items() if "0.conv" not in k}
    torch.save(checkpoint, other / "best.pt")
    code, _, err = _run(["evaluate", "--run", str(other), "--data", str(synth_dir)], capsys)
    assert code == 2 and "best.pt: weights do not fit model UNet" in err
    checkpoint["model_info"]["name"] = "SegNet"
    torch.save(checkpoint, other / "best.pt")
    code, _, err = _run(["evaluate", "--run", str(other), "--data", str(synth_dir)], capsys)
    assert code == 2 and "checkpoint is for model 'SegNet'" in err
    code, _, err = _run(["evaluate", "--run", str(tmp_path / "nothing"), "--data", str(synth_dir)], capsys)
    assert code == 2 and "run folder not found" in err


def test_rgb_input_warns_on_one_line(slice_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "rgb"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "x.png")
    with pytest.warns(UserWarning, match="x.png: RGB image converted to grayscale") as record:
        code, _, _ = _run(["predict", "--run", str(slice_run), "--images", str(folder), "--out", str(tmp_path / "p")], capsys)
    assert code == 0 and (tmp_path / "p" / "x_mask.png").is_file()
    shown = warnings.formatwarning(record[0].message, record[0].category, record[0].filename, record[0].lineno)
    assert shown.startswith("cmrseg: warning: ") and shown.count("\n") == 1


def test_train_and_cv_take_data_and_say_so_when_the_config_folder_is_missing(
        synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(tiny_config_dict(tmp_path / "elsewhere" / "train", epochs=1, split_mode="full")))
    for argv in (["train", "--config", str(config), "--out", str(tmp_path / "run")],
                 ["cv", "--config", str(config), "--out", str(tmp_path / "cv")]):
        code, _, err = _run(argv, capsys)
        assert code == 2 and err.count("\n") == 1
        assert "elsewhere/train: training data folder not found; give --data DIR or set dataset_info.train_data_path" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cv").exists()
    code, _, err = _run(["train", "--data", str(synth_dir), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "--data needs --config" in err
    # a split_mode full training says it has no validation split instead of printing nan
    code, out, err = _run(["train", "--config", str(config), "--data", str(synth_dir), "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dataset_info"]["train_data_path"] == str(synth_dir)
    assert "trained to epoch 1, no validation split (split_mode full)" in out and "nan" not in out
    assert "no validation split" in err and "nan" not in err


def test_every_verb_has_a_description_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    from cmrseg.cli import COMMANDS

    verbs = [[module.__name__.rsplit(".", 1)[1]] for module in COMMANDS] + [["data", "synth"]]
    for verb in verbs:
        with pytest.raises(SystemExit):
            main([*verb, "--help"])
        text = capsys.readouterr().out
        description = text.split("\n\n")[1]
        assert description[0].isupper() and description.rstrip().endswith("."), verb
        example = text.split("example")[1]
        assert f"cmrseg {' '.join(verb)}" in example, verb
    for verb in ("predict", "evaluate"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--run RUN run folder, export zip (cmrseg export) or, with --engine onnxruntime, an exported .onnx" in text


def test_predict_takes_one_png_file(slice_run: Path, synth_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    image = synth_dir / "image" / "synth2.png"
    code, out, _ = _run(["predict", "--run", str(slice_run), "--images", str(image), "--out", str(tmp_path / "one"),
                         "--overlays"], capsys)
    assert code == 0 and "wrote 1 masks" in out
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [".cmrseg-output.json", "cases.csv", "synth2_mask.png",
                                                                    "synth2_overlay.png"]
    assert main(["predict", "--run", str(slice_run), "--images", str(synth_dir), "--out", str(tmp_path / "all")]) == 0
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "one" / "synth2_mask.png")),
                                  np.array(Image.open(tmp_path / "all" / "synth2_mask.png")))
    code, _, err = _run(["predict", "--run", str(slice_run), "--images", str(tmp_path / "nope.png"),
                         "--out", str(tmp_path / "none")], capsys)
    assert code == 2 and "nope.png: file not found" in err


def test_demo_cleans_its_volume_predictions_in_3d_and_says_why_its_ef_is_rough() -> None:
    """Without the largest 3D component, stray RV blobs on the demo's small apical and end-systolic phantom slices
    made its RV EF 44 points too low (-7 with it); the demo says why its volume numbers are rough."""
    script = (Path(__file__).resolve().parent.parent / "scripts" / "demo.sh").read_text()
    volume_lines = [line for line in script.splitlines() if line.startswith("cmrseg ") and "synth/volumes\"" in line
                    and line.split()[1] in ("predict", "evaluate") and "--run" in line]  # the demo's own run
    assert any(line.startswith("cmrseg predict --images") for line in script.splitlines())  # and the shipped model
    assert len(volume_lines) == 2 and all(line.endswith("--postprocess") for line in volume_lines)
    assert "expect EF errors of several points" in script
