"""One CPU training split over processes (``processes``): each process's share of an epoch, the refusals, and a
two-process run that writes a complete run folder once, learns, and resumes in one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cmrseg import runs
from cmrseg.cli import main
from cmrseg.config import config_from_dict
from cmrseg.data.synth import write_synthetic_volumes
from cmrseg.errors import CmrsegError
from cmrseg.io.outputs import LOCK_FILE
from cmrseg.training.parallel import ProcessShare, available_cores, training_processes
from cmrseg.training.trainer import train

from conftest import tiny_config_dict

DEMO_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "demo.json")


@pytest.mark.parametrize("count", [6, 7, 8])
def test_the_shares_of_an_epoch_cover_it_in_equal_parts(count: int) -> None:
    order = [5, 3, 0, 6, 1, 4, 2, 7][:count]
    shares = [ProcessShare(rank, 2).shard(order) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == -(-count // 2)
    assert sorted(shares[0] + shares[1]) == sorted(order + order[: count % 2])
    assert ProcessShare().shard(order) == order
    assert ProcessShare(1, 2).batch_size(8) == 4


def test_processes_are_refused_beyond_the_cores_or_when_they_do_not_divide_the_batch() -> None:
    cpu = torch.device("cpu")
    assert training_processes(1, 8, cpu) == 1
    with pytest.warns(UserWarning, match="processes 4 is for CPU training; training on cuda in one process"):
        assert training_processes(4, 8, torch.device("cuda")) == 1  # a GPU trains in one process
    with pytest.raises(CmrsegError, match=f"more than the {available_cores()} CPU cores") as error:
        training_processes(available_cores() + 1, 64, cpu)
    assert error.value.key == "processes"
    if available_cores() >= 2:
        assert training_processes(2, 8, cpu) == 2
        with pytest.raises(CmrsegError, match="processes 2 does not divide batch_size 5"):
            training_processes(2, 5, cpu)


@pytest.mark.skipif(available_cores() < 2, reason="two processes need two cores")
def test_two_processes_train_a_complete_run_that_one_process_resumes(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=3, checkpoint_every=1, processes=2))
    stopped = train(config, tmp_path / "run", stop_after=2, progress=False)
    assert stopped.stopped_at == 2 and [row["epoch"] for row in stopped.history] == [1, 2]
    run = tmp_path / "run"
    for name in ("config.json", "normalization.json", "best.pt", "last.pt", "history.csv", "loss_curve.png"):
        assert (run / name).is_file(), name
    assert not (run / LOCK_FILE).exists()
    assert runs.read_run_config(run).processes == 2
    finished = train(None, run, resume=True, progress=False, processes=1)
    losses = [row["train_loss"] for row in finished.history]
    assert [row["epoch"] for row in finished.history] == [1, 2, 3]
    assert losses[2] < losses[0]
    weights = torch.load(run / "last.pt", weights_only=True)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


@pytest.mark.skipif(available_cores() < 2, reason="two processes need two cores")
def test_a_data_error_in_a_training_process_is_one_line_and_leaves_no_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_synthetic_volumes(tmp_path / "acdc", 0, seed=3, grids=[(1.5, 96), (1.5, 96)], slices=(3, 3))
    broken = sorted(data.rglob("*_gt.nii.gz"))[0]
    broken.write_bytes(b"not a volume")
    out = tmp_path / "run"
    code = main(["train", "--config", DEMO_CONFIG, "--data", str(data), "--out", str(out), "--epochs", "1",
                 "--processes", "2", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"cmrseg: error: {broken}: corrupt or unreadable NIfTI")
    assert not out.exists()
    assert main(["train", "--config", DEMO_CONFIG, "--data", str(data), "--out", str(out), "--processes",
                 "999"]) == 2
    assert "processes 999 is more than the" in capsys.readouterr().err
    assert main(["train", "--config", DEMO_CONFIG, "--data", str(data), "--out", str(out), "--processes", "0"]) == 2
    assert "processes must be at least 1, got 0" in capsys.readouterr().err
    assert not out.exists()
