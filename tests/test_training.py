"""Training: the loss falls, runs are repeatable, resume reproduces an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cmrseg import runs
from cmrseg.config import CriterionInfo, ExperimentConfig, SchedulerInfo, config_from_dict
from cmrseg.errors import CmrsegError
from cmrseg.training.losses import build_loss
from cmrseg.training.optim import lr_factor
from cmrseg.training.trainer import Trainer, TrainingInterrupted, train

from conftest import tiny_config_dict


def _history(run_dir: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in runs.read_history(run_dir)]


def test_run_folder_contents_and_falling_loss(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=4, checkpoint_every=2))
    result = train(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "normalization.json", "best.pt", "last.pt", "history.csv", "loss_curve.png"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_0002.pt", "epoch_0004.pt"]
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert 0.0 <= result.best_dice <= 1.0 and result.best_dice == max(r["dice_mean"] for r in result.history)
    assert (run / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_two_runs_give_the_same_history(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir))
    train(config, tmp_path / "a", progress=False)
    train(config, tmp_path / "b", progress=False)
    assert _history(tmp_path / "a") == _history(tmp_path / "b")


def test_resume_reaches_the_same_result(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=3, ema={"decay": 0.9}))
    train(config, tmp_path / "full", progress=False)
    train(config, tmp_path / "part", epochs=1, progress=False)
    saved = runs.read_run_config(tmp_path / "part")
    assert saved.epochs == 1
    train(None, tmp_path / "part", epochs=3, resume=True, progress=False)
    assert _history(tmp_path / "full") == _history(tmp_path / "part")
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    part = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], part[k]) for k in full)


def test_stop_after_keeps_the_schedule_and_resume_finishes_the_same_run(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=3, checkpoint_every=3,
                                               scheduler={"name": "poly"}))
    train(config, tmp_path / "full", progress=False)
    stopped = train(config, tmp_path / "part", stop_after=1, progress=False)
    assert stopped.stopped_at == 1 and [row["epoch"] for row in stopped.history] == [1]
    assert runs.read_run_config(tmp_path / "part").epochs == 3
    assert (tmp_path / "part" / runs.epoch_checkpoint(1)).is_file()
    first = [row for row in runs.read_history(tmp_path / "full") if row["epoch"] == 1][0]
    assert stopped.history[0]["lr"] == first["lr"]
    with pytest.raises(CmrsegError, match="stop-after 1 is not past the 1 epochs"):
        train(None, tmp_path / "part", resume=True, stop_after=1, progress=False)
    finished = train(None, tmp_path / "part", resume=True, progress=False)
    assert finished.stopped_at is None
    assert _history(tmp_path / "full") == _history(tmp_path / "part")
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    part = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], part[k]) for k in full)
    with pytest.raises(CmrsegError, match="stop-after must be at least 1, got 0"):
        train(config, tmp_path / "zero", stop_after=0, progress=False)


def test_existing_run_is_not_overwritten_and_resume_needs_a_run(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=1))
    train(config, tmp_path / "run", progress=False)
    with pytest.raises(CmrsegError, match="already holds a run"):
        train(config, tmp_path / "run", progress=False)
    with pytest.raises(CmrsegError, match="nothing to resume"):
        train(None, tmp_path / "empty", resume=True, progress=False)


def _train_until_ctrl_c(config: ExperimentConfig, run_dir: Path, epoch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train ``config`` into ``run_dir`` as if Ctrl-C were pressed during ``epoch``."""
    original = Trainer.train_epoch

    def interrupt(self: Trainer, current: int) -> float:
        if current == epoch:
            raise KeyboardInterrupt
        return original(self, current)

    monkeypatch.setattr(Trainer, "train_epoch", interrupt)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(config, run_dir, progress=False)
    monkeypatch.setattr(Trainer, "train_epoch", original)


def test_ctrl_c_keeps_finished_epochs(synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=3))
    _train_until_ctrl_c(config, tmp_path / "run", 2, monkeypatch)
    assert len(runs.read_history(tmp_path / "run")) == 1
    result = train(None, tmp_path / "run", resume=True, progress=False)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]


@pytest.mark.parametrize("name", ["CrossEntropy", "Dice", "DiceCE", "DiceFocal", "Focal", "Tversky"])
def test_every_loss_is_lower_for_a_better_prediction(name: str) -> None:
    loss = build_loss(CriterionInfo(name=name))
    target = torch.randint(0, 4, (2, 8, 8))
    good = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float() * 8
    bad = torch.zeros_like(good)
    assert loss(good, target).item() < loss(bad, target).item()
    deep = loss([good, good[..., ::2, ::2]], target)
    assert torch.isfinite(deep)


@pytest.mark.parametrize("optimizer", ["Adam", "RMSprop", "SGD"])
def test_optimizers_train(synth_dir: Path, tmp_path: Path, optimizer: str) -> None:
    data = tiny_config_dict(synth_dir, epochs=1, optimizer_info={"name": optimizer, "lr": 0.01})
    result = train(config_from_dict(data), tmp_path / optimizer, progress=False)
    assert len(result.history) == 1


def test_schedules() -> None:
    poly = SchedulerInfo(name="poly", warmup_epochs=1)
    assert lr_factor(poly, 0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_factor(poly, 10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_factor(poly, 100, 100, 10, 1.0) == pytest.approx(0.0)
    cosine = SchedulerInfo(name="cosine")
    assert lr_factor(cosine, 50, 100, 0, 1.0) == pytest.approx(0.5)


def test_full_mode_saves_last_epoch_as_best(synth_dir: Path, tmp_path: Path) -> None:
    config: ExperimentConfig = config_from_dict(tiny_config_dict(synth_dir, split_mode="full"))
    result = train(config, tmp_path / "run", progress=False)
    assert result.best_epoch == 2
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["epoch"] == 2


def test_unet_learns_the_synthetic_phantoms(tmp_path: Path) -> None:
    """The demo's promise: a small U-Net passes 0.8 mean Dice on held-out phantoms within seconds."""
    from cmrseg.data.synth import write_synthetic_dataset
    from cmrseg.evaluation import evaluate_run

    train_dir = write_synthetic_dataset(tmp_path / "train", count=40, seed=11, size=64)
    held_out = write_synthetic_dataset(tmp_path / "held_out", count=10, seed=12, size=64)
    data = tiny_config_dict(train_dir, epochs=14, batch_size=8, threads=2, split_mode="full",
                            model_info={"name": "UNet", "depths": 3, "features": 16, "model_path": str(tmp_path / "export" / "unet.pt")},
                            optimizer_info={"name": "Adam", "lr": 0.003}, scheduler={"name": "poly"})
    train(config_from_dict(data), tmp_path / "run", progress=False)
    assert evaluate_run(tmp_path / "run", held_out)["dice"]["mean"] > 0.8
    assert (tmp_path / "export" / "unet.pt").read_bytes() == (tmp_path / "run" / "best.pt").read_bytes()


def test_batch_dice_pools_the_batch() -> None:
    """With batch Dice, a class missing from one image is not scored on that image alone."""
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[0, :4] = 1
    logits = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float() * 8
    logits[1, 1, 0, 0] = 20.0  # one false-positive RV pixel in the image without RV
    info = CriterionInfo(name="Dice", include_background=False)
    per_image = build_loss(info)(logits, target).item()
    pooled = build_loss(info.model_copy(update={"batch_dice": True}))(logits, target).item()
    assert pooled < per_image


def test_class_weights_weight_the_cross_entropy_per_class() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    weights = [1.0, 3.0, 1.0, 0.5]
    loss = build_loss(CriterionInfo(name="CrossEntropy", class_weights=weights))(logits, target)
    expected = torch.nn.functional.cross_entropy(logits, target, weight=torch.tensor(weights))
    torch.testing.assert_close(loss, expected)
    plain = build_loss(CriterionInfo(name="DiceCE"))(logits, target)
    assert build_loss(CriterionInfo(name="DiceCE", class_weights=weights))(logits, target).item() != pytest.approx(plain.item())


@pytest.mark.parametrize("name", ["CrossEntropy", "DiceCE"])
def test_label_smoothing_penalises_overconfident_logits(name: str) -> None:
    """Smoothed targets make a near-one-hot prediction cost more, and match torch's smoothed cross-entropy."""
    target = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    confident = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float() * 20
    plain = build_loss(CriterionInfo(name=name))(confident, target).item()
    smoothed = build_loss(CriterionInfo(name=name, label_smoothing=0.1))(confident, target).item()
    expected_ce = torch.nn.functional.cross_entropy(confident, target, label_smoothing=0.1).item()
    assert smoothed > plain + 1.0
    assert smoothed - plain == pytest.approx(expected_ce - torch.nn.functional.cross_entropy(confident, target).item(), rel=1e-4)


@pytest.mark.parametrize("settings", [{"name": "Tversky"}, {"name": "DiceCE", "include_background": False}])
def test_class_weights_need_every_class_in_the_loss(settings: dict) -> None:
    with pytest.raises(ValueError, match="class_weights needs include_background"):
        CriterionInfo(class_weights=[1, 2, 1, 1], **settings)


def test_swa_averages_the_last_epochs_at_a_constant_lr(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=4, swa={"start_fraction": 0.5, "lr": 0.002}))
    trainer = Trainer(config, tmp_path / "run", progress=False)
    snapshots = []
    for epoch in range(1, 5):
        trainer.train_epoch(epoch)
        snapshots.append({k: v.detach().clone() for k, v in trainer.model.named_parameters()})
        trainer._average_weights(epoch)
    assert trainer.swa_start == 3 and int(trainer.swa.n_averaged) == 2
    assert trainer.optimizer.param_groups[0]["lr"] == 0.002
    averaged = dict(trainer.eval_model.named_parameters())
    for name, value in averaged.items():
        torch.testing.assert_close(value, (snapshots[2][name] + snapshots[3][name]) / 2)
    running_mean = next(v for k, v in trainer.eval_model.state_dict().items() if k.endswith("running_mean"))
    trained_mean = next(v for k, v in trainer.model.state_dict().items() if k.endswith("running_mean"))
    assert not torch.allclose(running_mean, trained_mean), "batch-norm statistics are refit for the averaged weights"


def test_swa_run_interrupted_while_averaging_resumes_to_the_same_weights(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=4, swa={"start_fraction": 0.5}))
    train(config, tmp_path / "full", progress=False)
    _train_until_ctrl_c(config, tmp_path / "part", 4, monkeypatch)
    train(None, tmp_path / "part", resume=True, progress=False)
    assert _history(tmp_path / "full") == _history(tmp_path / "part")
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["swa"]
    part = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["swa"]
    assert int(full["n_averaged"]) == 2
    assert all(torch.equal(full[k], part[k]) for k in full)


def test_ema_and_swa_together_are_refused(synth_dir: Path) -> None:
    with pytest.raises(CmrsegError, match="ema and swa"):
        config_from_dict(tiny_config_dict(synth_dir, ema={"decay": 0.9}, swa={}))


def test_bfloat16_training_runs_the_network_in_bfloat16_and_keeps_float32_weights(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(synth_dir, epochs=3, precision="bfloat16"))
    trainer = Trainer(config, tmp_path / "run", progress=False)
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[torch.dtype] = []
    conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    losses = [trainer.train_epoch(epoch) for epoch in (1, 2, 3)]
    assert set(seen) == {torch.bfloat16}
    assert losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    val_loss, dice = trainer.validate()
    assert torch.isfinite(torch.tensor(val_loss)) and 0.0 <= dice["mean"] <= 1.0


def test_precision_names_the_key_and_the_choices(synth_dir: Path) -> None:
    with pytest.raises(CmrsegError, match="'precision'.*'float32' or 'bfloat16'.*'float16'"):
        config_from_dict(tiny_config_dict(synth_dir, precision="float16"))
