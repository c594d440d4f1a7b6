"""Issue #5 training speed: seconds per training epoch of configs/best.json by threads, batch size, memory format.

One warm-up epoch, then the fastest of ``--repeats`` epochs (80 training slices of fold 0, no validation).

    .venv/bin/python benchmarks/epoch_speed.py
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from cmrseg.config import apply_overrides, load_config
from cmrseg.training import Trainer

REPO = Path(__file__).resolve().parent.parent


def epoch_seconds(overrides: dict[str, object], repeats: int) -> float:
    config = apply_overrides(load_config(REPO / "configs" / "best.json"), {"folds": 5, "fold": 0, **overrides})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp), progress=False)
        trainer.train_epoch(1)
        times = []
        for epoch in range(2, 2 + repeats):
            started = time.perf_counter()
            trainer.train_epoch(epoch)
            times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print("| threads | batch | channels_last | s/epoch |\n|---|---|---|---|")
    for threads, batch, channels_last in itertools.product((1, 2), (4, 8, 16), (False, True)):
        if channels_last and batch != 8:
            continue
        seconds = epoch_seconds({"threads": threads, "batch_size": batch, "channels_last": channels_last}, args.repeats)
        print(f"| {threads} | {batch} | {channels_last} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
