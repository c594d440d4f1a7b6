"""The sweep table and plots: ``sweep.csv`` from the run folders, loss curves and best-Dice bars."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cmrseg import runs
from cmrseg.constants import STRUCTURES
from cmrseg.workflows.sweep.grid import RUNS_DIR, Trial, value_text
from cmrseg.io.atomic import write_csv_atomic

TABLE_FILE = "sweep.csv"
LOSS_PLOT = "loss_curves.png"
SCORE_PLOT = "best_dice.png"

SCORE_COLUMNS = [f"dice_{name}" for name in (*STRUCTURES, "mean")]
TABLE_COLUMNS = ["choice", "status", "epochs_done", "best_epoch", *SCORE_COLUMNS,
                 "final_train_loss", "final_val_loss", "minutes", "run_dir"]


def trial_row(trial: Trial, error: str = "") -> dict[str, Any]:
    """One ``sweep.csv`` row from the run folder's history: scores at the best epoch, last losses, time."""
    history = runs.read_history(trial.run_dir)
    row: dict[str, Any] = {"choice": trial.label, **{key: value_text(v) for key, v in trial.values.items()},
                           "epochs_done": len(history), "run_dir": f"{RUNS_DIR}/{trial.run_dir.name}"}
    if error:
        row["status"] = f"failed: {error}"
    else:
        row["status"] = "finished" if len(history) >= trial.config.epochs else "incomplete"
    if history:
        scored = [r for r in history if not math.isnan(r.get("dice_mean", math.nan))]
        best = max(scored, key=lambda r: r["dice_mean"]) if scored else {}
        row.update({"best_epoch": int(best["epoch"]) if best else "",
                    **{col: round(best[col], 4) if best else "" for col in SCORE_COLUMNS},
                    "final_train_loss": round(history[-1]["train_loss"], 4),
                    "final_val_loss": round(history[-1]["val_loss"], 4),
                    "minutes": round(sum(r["seconds"] for r in history) / 60, 2)})
    return row


def write_table(rows: list[dict[str, Any]], keys: Sequence[str], path: Path) -> None:
    """``sweep.csv`` with the swept keys as extra columns after ``choice``; written atomically."""
    write_csv_atomic(path, rows, [TABLE_COLUMNS[0], *keys, *TABLE_COLUMNS[1:]])


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of a ``sweep.csv`` as strings."""
    with path.open() as handle:
        return list(csv.DictReader(handle))


def plot_losses(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Train loss (left) and validation loss (right) per epoch, one colour per choice."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from cmrseg.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for index, (label, history) in enumerate(histories.items()):
        epochs = [row["epoch"] for row in history]
        for ax, column in zip(axes, ("train_loss", "val_loss")):
            ax.plot(epochs, [row[column] for row in history], color=f"C{index % 10}", label=label, marker=".")
    for ax, title in zip(axes, ("Train loss", "Validation loss")):
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    _legend_below(fig, axes[0], len(histories))
    save_figure(fig, path)


def _legend_below(fig: Any, ax: Any, count: int) -> None:
    """One legend under the axes, in columns, so long choice labels never squeeze the plot."""
    handles, labels = ax.get_legend_handles_labels()
    columns = min(3, max(1, count))
    fig.tight_layout(rect=(0, 0.06 * math.ceil(count / columns) + 0.04, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)


def plot_scores(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: for each structure (and the mean) the best validation Dice of every choice."""
    import matplotlib.pyplot as plt
    import numpy as np

    from cmrseg.plots import save_figure

    scored = [row for row in rows if row.get("dice_mean") not in ("", None)]
    groups = [*STRUCTURES, "mean"]
    fig, ax = plt.subplots(figsize=(min(14.0, max(8.0, 1.5 + 0.3 * len(scored) * len(groups))), 4))
    width = 0.8 / max(1, len(scored))
    for index, row in enumerate(scored):
        x = np.arange(len(groups)) + (index - (len(scored) - 1) / 2) * width
        ax.bar(x, [float(row[f"dice_{g}"]) for g in groups], width, label=row["choice"], color=f"C{index % 10}")
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set(ylabel="best validation Dice", ylim=(0, 1), title="Best validation Dice per structure")
    ax.grid(axis="y", alpha=0.3)
    _legend_below(fig, ax, len(scored))
    save_figure(fig, path)


def summarize_sweep(trials: list[Trial], grid: dict[str, list[Any]], sweep_dir: Path, errors: dict[str, str]) -> list[dict[str, Any]]:
    """Rewrite ``sweep.csv`` and both comparison plots from the run folders as they are now."""
    rows = [trial_row(trial, errors.get(trial.label, "")) for trial in trials]
    write_table(rows, list(grid), sweep_dir / TABLE_FILE)
    histories = {trial.label: runs.read_history(trial.run_dir) for trial in trials}
    plot_losses({label: rows for label, rows in histories.items() if rows}, sweep_dir / LOSS_PLOT)
    plot_scores(rows, sweep_dir / SCORE_PLOT)
    return rows
