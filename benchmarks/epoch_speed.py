"""Issue #5 training speed: seconds per training epoch of configs/best.json by threads, batch size, memory format.

One warm-up epoch, then the fastest of ``--repeats`` epochs (80 training slices of fold 0, no validation).

    .venv/bin/python benchmarks/epoch_speed.py                             # the grid for best.json's model
    .venv/bin/python benchmarks/epoch_speed.py --quick --input-scales 1 2   # cost of input_scale 2
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from cmrseg.config import apply_overrides, load_config
from cmrseg.training import Trainer
from cmrseg.utils import write_results

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
    parser.add_argument("--input-scales", type=int, nargs="+", help="model_info.input_scale values (default: best.json's)")
    parser.add_argument("--quick", action="store_true", help="only 1 thread, batch 8, contiguous memory")
    args = parser.parse_args()
    grid = [(1, 8, False)] if args.quick else [
        (threads, batch, channels_last)
        for threads, batch, channels_last in itertools.product((1, 2), (4, 8, 16), (False, True))
        if batch == 8 or not channels_last
    ]
    scales = args.input_scales or [load_config(REPO / "configs" / "best.json").model_info.input_scale]
    print("| input_scale | threads | batch | channels_last | s/epoch |\n|---|---|---|---|---|")
    rows = []
    for scale in scales:
        for threads, batch, channels_last in grid:
            overrides = {"threads": threads, "batch_size": batch, "channels_last": channels_last, "model_info.input_scale": scale}
            rows.append({**overrides, "seconds_per_epoch": round(epoch_seconds(overrides, args.repeats), 2)})
            print(f"| {scale} | {threads} | {batch} | {channels_last} | {rows[-1]['seconds_per_epoch']:.2f} |")
    print(f"wrote {write_results(REPO / 'benchmarks' / 'results' / 'epoch_speed.json', {'rows': rows})}")


if __name__ == "__main__":
    main()
