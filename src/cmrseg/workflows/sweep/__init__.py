"""Sweeps: one training per choice of one or more config keys, compared in a table and plots.

    SWEEP_DIR/sweep.json        the base config and the swept keys and values (what the report reads)
    SWEEP_DIR/runs/<slug>/      one ordinary run folder per choice (see :mod:`cmrseg.runs`)
    SWEEP_DIR/sweep.csv         choice, best validation Dice per structure, final losses, minutes
    SWEEP_DIR/loss_curves.png   train and validation loss of every choice, overlaid
    SWEEP_DIR/best_dice.png     best validation Dice per structure, one bar per choice
    SWEEP_DIR/ensemble/         with ``ensemble``: the soft-voting ensemble of every choice (a run folder),
                                e.g. of ``--set seed=0,1`` trained side by side with ``--workers 2``

Running the same command again resumes: finished runs are skipped and half-finished ones continue
from their ``last.pt``. ``grid`` owns the ``--set`` syntax and the choices, ``engines`` trains run
folders (here, in local processes or on Ray; cross-validation uses it too), ``table`` writes
``sweep.csv`` and the plots, ``runner`` puts them together in :func:`run_sweep`.
"""

from cmrseg.workflows.sweep.engines import TrainJob, import_ray, run_jobs, run_trial
from cmrseg.workflows.sweep.grid import RUNS_DIR, Trial, choice_slug, expand_grid, parse_sets, split_choices, value_text
from cmrseg.workflows.sweep.runner import SWEEP_FILE, SweepInterrupted, SweepResult, run_sweep, trial_state
from cmrseg.workflows.sweep.table import LOSS_PLOT, SCORE_COLUMNS, SCORE_PLOT, TABLE_COLUMNS, TABLE_FILE, plot_losses, plot_scores, read_table, summarize_sweep, trial_row, write_table

__all__ = [
    "LOSS_PLOT", "RUNS_DIR", "SCORE_COLUMNS", "SCORE_PLOT", "SWEEP_FILE", "TABLE_COLUMNS", "TABLE_FILE",
    "SweepInterrupted", "SweepResult", "TrainJob", "Trial", "choice_slug", "expand_grid", "import_ray",
    "parse_sets", "plot_losses", "plot_scores", "read_table", "run_jobs", "run_sweep", "run_trial",
    "split_choices", "summarize_sweep", "trial_row", "trial_state", "value_text", "write_table",
]
