"""Training speed of one run on every core: one thread, two threads, two processes (``processes``), in one run.

Each setting trains the same config (fold 0 of 5) through ``cmrseg.training.trainer.train`` for ``--epochs``
epochs of its unchanged schedule (``stop_after``), in a fresh folder; the seconds of its epochs after the first
(which warms up) are compared as ratios to one thread.

    .venv/bin/python benchmarks/processes_speed.py --config configs/acdc_native.json --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from cmrseg.config import apply_overrides, load_config_with_overrides
from cmrseg.errors import CmrsegError
from cmrseg.io.outputs import check_output_file
from cmrseg.training.trainer import train
from cmrseg.utils import write_results

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SETTINGS = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes, 1 thread each", 2, 1)]


def measure(args: argparse.Namespace) -> None:
    base = load_config_with_overrides(args.config, args.set)
    out = check_output_file(args.out) if args.out else RESULTS / "processes_speed.json"
    base = apply_overrides(base, {"folds": 5, "fold": 0, "val_every": 10_000, "checkpoint_every": 10_000})
    rows = []
    print("| setting | s/epoch | speed-up |\n|---|---|---|")
    for name, processes, threads in SETTINGS:
        config = apply_overrides(base, {"processes": processes, "threads": threads})
        with tempfile.TemporaryDirectory() as tmp:
            result = train(config, Path(tmp) / "run", progress=False, stop_after=args.epochs)
        seconds = statistics.mean(row["seconds"] for row in result.history[1:])
        rows.append({"setting": name, "processes": processes, "threads": threads, "seconds_per_epoch": round(seconds, 2),
                     "epochs_timed": len(result.history) - 1})
        print(f"| {name} | {seconds:.1f} | {rows[0]['seconds_per_epoch'] / seconds:.2f}x |", flush=True)
    for row in rows:
        row["speed_up"] = round(rows[0]["seconds_per_epoch"] / row["seconds_per_epoch"], 2)
    results = {"config": str(args.config), "overrides": args.set, "epochs": args.epochs, "rows": rows}
    print(f"wrote {write_results(out, results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "acdc_native.json")
    parser.add_argument("--epochs", type=int, default=3, help="epochs a setting trains (the first is not timed)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as `cmrseg train`")
    parser.add_argument("--out", type=Path, help="results file (JSON, with the commit and machine; new, or one "
                                                   "cmrseg wrote; default benchmarks/results/processes_speed.json)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch warms up and is not timed")
    try:
        measure(args)
    except CmrsegError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
