"""Training speed: seconds per training epoch of a config by threads, batch size, memory format and precision.

One warm-up epoch, then the fastest of ``--repeats`` epochs (the training slices of fold 0 of 5, no validation).

    .venv/bin/python benchmarks/epoch_speed.py                             # the #5 grid for best.json's model
    .venv/bin/python benchmarks/epoch_speed.py --quick --input-scales 1 2   # cost of input_scale 2
    .venv/bin/python benchmarks/epoch_speed.py --arithmetic --repeats 1 --config configs/acdc_phase.json \
        --out benchmarks/results/epoch_speed_acdc_phase.json          # channels-last x bfloat16, config's batch
    .venv/bin/python benchmarks/epoch_speed.py --processes --repeats 2 --config configs/acdc_native.json \
        --out benchmarks/results/processes_speed.json                 # 1 thread, 2 threads, 2 processes

``--processes`` trains each setting through ``cmrseg.training.trainer.train`` (as ``cmrseg train`` does, which is
the only way to run several processes) for ``--repeats`` + 1 epochs of the config's schedule, and takes the mean
of the epochs after the first.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cmrseg.config import ExperimentConfig, apply_overrides, load_config_with_overrides
from cmrseg.errors import CmrsegError
from cmrseg.io.outputs import check_output_file
from cmrseg.training.trainer import Trainer, train
from cmrseg.utils import write_results

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def epoch_seconds(base: ExperimentConfig, overrides: dict[str, object], repeats: int) -> float:
    config = apply_overrides(base, {"folds": 5, "fold": 0, **overrides})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp), progress=False)
        trainer.train_epoch(1)
        times = []
        for epoch in range(2, 2 + repeats):
            started = time.perf_counter()
            trainer.train_epoch(epoch)
            times.append(time.perf_counter() - started)
    return min(times)


PROCESS_SETTINGS = [(1, 1), (1, 2), (2, 1)]
"""(processes, threads each): one core, both cores through torch's threads, both cores as two processes."""


def trained_epoch_seconds(base: ExperimentConfig, processes: int, threads: int, repeats: int) -> float:
    """Mean seconds of the epochs after the first of a real training (``train``) in ``processes`` processes."""
    config = apply_overrides(base, {"folds": 5, "fold": 0, "processes": processes, "threads": threads,
                                    "val_every": 10_000, "checkpoint_every": 10_000})
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, Path(tmp) / "run", progress=False, stop_after=repeats + 1)
    return statistics.mean(row["seconds"] for row in result.history[1:])


def measure_processes(args: argparse.Namespace, base: ExperimentConfig, out: Path) -> None:
    print("| processes | threads each | s/epoch | speed-up |\n|---|---|---|---|")
    rows = []
    for processes, threads in PROCESS_SETTINGS:
        seconds = trained_epoch_seconds(base, processes, threads, args.repeats)
        rows.append({"processes": processes, "threads": threads, "seconds_per_epoch": round(seconds, 2)})
        print(f"| {processes} | {threads} | {seconds:.1f} | {rows[0]['seconds_per_epoch'] / seconds:.2f}x |", flush=True)
    for row in rows:
        row["speed_up"] = round(rows[0]["seconds_per_epoch"] / row["seconds_per_epoch"], 2)
    print(f"wrote {write_results(out, {'config': str(args.config), 'overrides': args.set, 'rows': rows})}")


def arithmetic_grid(base: ExperimentConfig) -> list[tuple[int, int, bool, str]]:
    """The config's threads (all cores when unset) and batch, in every memory format and precision."""
    threads = base.threads or torch.get_num_threads()
    return [(threads, base.batch_size, channels_last, precision)
            for channels_last, precision in itertools.product((False, True), ("float32", "bfloat16"))]


def measure(args: argparse.Namespace) -> None:
    """Time every grid point of ``args`` and write the results file; bad input raises :class:`CmrsegError` before
    the first epoch."""
    base = load_config_with_overrides(args.config, args.set)
    out = check_output_file(args.out) if args.out else RESULTS / "epoch_speed.json"
    if args.processes:
        return measure_processes(args, base, out)
    grid = arithmetic_grid(base) if args.arithmetic else [(1, 8, False, "float32")] if args.quick else [
        (threads, batch, channels_last, "float32")
        for threads, batch, channels_last in itertools.product((1, 2), (4, 8, 16), (False, True))
        if batch == 8 or not channels_last
    ]
    scales = args.input_scales or [base.model_info.input_scale]
    print("| input_scale | threads | batch | channels_last | precision | s/epoch |\n|---|---|---|---|---|---|")
    rows = []
    for scale in scales:
        for threads, batch, channels_last, precision in grid:
            overrides = {"threads": threads, "batch_size": batch, "channels_last": channels_last,
                         "precision": precision, "model_info.input_scale": scale}
            seconds = epoch_seconds(base, overrides, args.repeats)
            rows.append({**overrides, "seconds_per_epoch": round(seconds, 2)})
            print(f"| {scale} | {threads} | {batch} | {channels_last} | {precision} | {seconds:.2f} |", flush=True)
    results = {"config": str(args.config), "overrides": args.set, "rows": rows}
    print(f"wrote {write_results(out, results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--input-scales", type=int, nargs="+", help="model_info.input_scale values (default: best.json's)")
    parser.add_argument("--quick", action="store_true", help="only 1 thread, batch 8, contiguous memory")
    parser.add_argument("--arithmetic", action="store_true",
                        help="only the config's threads and batch: contiguous / channels-last x float32 / bfloat16")
    parser.add_argument("--processes", action="store_true",
                        help="one thread, two threads and two processes (train --processes 2), the config's batch")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "best.json")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as `cmrseg train`")
    parser.add_argument("--out", type=Path, help="results file (JSON, with the commit and machine; new, or one "
                                                   "cmrseg wrote; default benchmarks/results/epoch_speed.json)")
    args = parser.parse_args()
    try:
        measure(args)
    except CmrsegError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
