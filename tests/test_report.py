"""HTML reports: self-contained pages with embedded PNGs and tables that a headless Chromium renders."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmrseg.cli import main
from cmrseg.config import config_from_dict, load_config
from cmrseg.data.dataset import prepare_data
from cmrseg.workflows.sweep import parse_sets, run_sweep

from conftest import tiny_config_dict

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class PageParts(HTMLParser):
    """Collects the ``src`` of every ``<img>`` and counts tables and table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        self.tables += tag == "table"
        self.rows += tag == "tr"


def parse(page: str) -> PageParts:
    parts = PageParts()
    parts.feed(page)
    return parts


def decode_png(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return Image.open(io.BytesIO(base64.b64decode(src[len(prefix):]))).convert("RGB")


@pytest.fixture(scope="module")
def sweep_dir(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report-sweep")
    config = folder / "base.json"
    config.write_text(json.dumps(tiny_config_dict(synth_dir, epochs=1)))
    run_sweep(load_config(config), parse_sets(["optimizer_info.lr=1e-2,1e-3"]), folder / "sweep", progress=False, log=lambda _: None)
    return folder / "sweep"


def test_run_report_embeds_metrics_overlays_curves_and_config(slice_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(slice_run), "--out", str(out)]) == 0
    page = out.read_text()
    parts = parse(page)
    n_val = len(prepare_data(config_from_dict(tiny_config_dict(synth_dir))).val)
    assert len(parts.images) == 3 * n_val + 1
    assert all(decode_png(src).size[0] > 0 for src in parts.images)
    assert parts.tables == 2 and parts.rows == (1 + 4) + (1 + n_val)
    assert "validation split" in page and '"depths": 2' in page
    assert "<link" not in page and "<script" not in page
    assert "class weights" not in page


def test_run_report_names_the_class_weights_it_scored_with(slice_run: Path, tmp_path: Path) -> None:
    weighted = tmp_path / "weighted"
    shutil.copytree(slice_run, weighted)
    config = json.loads((weighted / "config.json").read_text())
    config["postprocess"] = {"largest_component": False, "class_weights": [1, 2, 1, 1]}
    (weighted / "config.json").write_text(json.dumps(config))
    out = tmp_path / "report.html"
    assert main(["report", str(weighted), "--out", str(out)]) == 0
    assert "class weights 1, 2, 1, 1 (background, RV, Myo, LV)" in out.read_text()


def test_run_report_on_other_data_limits_overlays(slice_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(slice_run), "--out", str(out), "--data", str(synth_dir), "--max-images", "2"]) == 0
    parts = parse(out.read_text())
    assert len(parts.images) == 3 * 2 + 1
    assert parts.rows == (1 + 4) + (1 + 24)


def test_sweep_report_has_table_and_both_plots(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep.html"
    assert main(["report", str(sweep_dir), "--out", str(out)]) == 0
    page = out.read_text()
    parts = parse(page)
    assert len(parts.images) == 2 and all(decode_png(src).size[0] > 100 for src in parts.images)
    assert parts.tables == 1 and parts.rows == 3
    assert "lr=0.01" in page and "lr=0.001" in page


@pytest.mark.parametrize("name, message", [(".", "neither a run folder"), ("missing", "folder not found")])
def test_bad_folder_is_a_one_line_error(name: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / name), "--out", str(tmp_path / "r.html")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium not installed (apt-get install chromium) - cannot check the rendered report")
    return path


def _chromium_run(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.parametrize("which", ["run", "sweep"])
def test_report_renders_in_headless_chromium(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    chromium = _chromium()
    folder = request.getfixturevalue({"run": "slice_run", "sweep": "sweep_dir"}[which])
    out = tmp_path / "report.html"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    dom = _chromium_run(chromium, tmp_path, "--dump-dom", out.as_uri()).stdout
    rendered = parse(dom)
    assert rendered.tables >= 1 and rendered.images
    assert all(src.startswith("data:image/png;base64,") for src in rendered.images)

    shot = tmp_path / "shot.png"
    _chromium_run(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", out.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
