"""Stacked vs one-at-a-time: whole sweep commands side by side, and the stacked loop's
arithmetic rate against this machine's matrix-multiply peak.

Each grid (or search) runs as ``python run.py -m ...`` under ``hydra/launcher=basic`` and
``hydra/launcher=stacked`` (and joblib with 2 workers where asked), in the same run of this
script, best of ``--repeats``, each with its peak RSS; then the stacked training loop alone is
timed in-process and its GFLOP/s compared with a float32 matmul of the same size class.
``--loop`` times the loop alone for K = 1, 2, ... members, one at a time and stacked.

    python bench/stacked_speed.py --grids lecture wide --epochs 20 --repeats 1
    python bench/stacked_speed.py --grids many --epochs 1 --launchers basic stacked --repeats 1
    python bench/stacked_speed.py --grids full --epochs 5 --root ../shared/data \
        --launchers basic stacked --repeats 1            # 8 jobs on full MNIST
    python bench/stacked_speed.py --grids optuna optuna_lr --launchers basic stacked --repeats 1
    python bench/stacked_speed.py --grids --loop 1 2 4 8 16 32 64 --device cuda \
        --data mnist --root ../shared/data --epochs 2    # the loop alone, on a GPU
    python bench/stacked_speed.py --grids --loop 8 --widths 200 400 --epochs 5   # padding
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mlp_sweep import data
from mlp_sweep.model import LOSSES, MLP
from mlp_sweep.stacked import Stack
from mlp_sweep.train import train_epoch

RUN = Path(__file__).resolve().parent.parent / "run.py"
GRIDS = {
    "lecture": ["hidden=50,100", "lr=0.05,0.1,0.5,1.0", "init_std=0.01,0.1"],
    "wide": ["hidden=50,100,200,400", "lr=0.05,0.1,0.5,1.0"],
    "many": ["hidden=range(10,330,10)", "lr=0.01,0.05,0.1,0.5,1,2,3,4"],
    "full": ["data=mnist", "hidden=50,100", "lr=0.05,0.1,0.5,1.0"],  # needs --root
    "optuna": ["hparams_search=optuna", "hydra.sweeper.n_trials=32"],  # a search, not a grid
    # The same search over what stacks: lr and init_std (batch_size, model, hidden fixed).
    "optuna_lr": [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=32",
        "~hydra.sweeper.params.batch_size",
        "~hydra.sweeper.params.model",
        "~hydra.sweeper.params.hidden",
    ],
}
LAUNCHERS = {
    "basic": ["hydra/launcher=basic"],
    "stacked": ["hydra/launcher=stacked"],
    "joblib2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def wall(command: list[str], repeats: int) -> tuple[float, float]:
    """The best wall time of ``python run.py -m <command>`` over ``repeats``, in a fresh
    folder each time, and its largest peak RSS in MB."""
    best, peak = float("inf"), 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "log"
            with log.open("w") as out:
                tic = time.perf_counter()
                proc = subprocess.Popen(
                    [sys.executable, str(RUN), "-m", *command, "hydra.sweep.dir=g"],
                    cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
                _, status, usage = os.wait4(proc.pid, 0)
                seconds = time.perf_counter() - tic
            if os.waitstatus_to_exitcode(status):
                sys.exit(f"{' '.join(command)} failed: {log.read_text().strip()[-2000:]}")
            best, peak = min(best, seconds), max(peak, usage.ru_maxrss / 1024)
    return best, peak


def matmul_peak(k: int, batch: int, width: int, seconds: float = 1.0) -> float:
    """GFLOP/s of a batched float32 matmul of the first layer's shape, repeated."""
    a, b = torch.rand(k, batch, 784), torch.rand(k, width, 784)
    flops, count, tic = 2 * k * batch * 784 * width, 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        torch.bmm(a, b.transpose(1, 2))
        count += 1
    return flops * count / (time.perf_counter() - tic) / 1e9


def stacked_rate(k: int, width: int, epochs: int) -> float:
    """GFLOP/s of the stacked training loop (forward and backward: 3 matmuls a layer) on
    mnist_5k, K members of 784-width-10, SGD."""
    splits = data.load("mnist_5k", device=torch.device("cpu"), val_size=500)
    models = [MLP(784, width, 10) for _ in range(k)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    stack = Stack(models, "sigmoid", optimizers)
    generators = [torch.Generator().manual_seed(i) for i in range(k)]
    stack.train_epoch("softmax_ce", splits.train, 100, generators)  # warm-up
    tic = time.perf_counter()
    for _ in range(epochs):
        stack.train_epoch("softmax_ce", splits.train, 100, generators)
    seconds = time.perf_counter() - tic
    flops = 3 * 2 * len(splits.train) * (784 * width + width * 10) * k * epochs
    return flops / seconds / 1e9


def loop_speed(
    ks: list[int], widths: list[int], splits: data.Splits, device: torch.device, epochs: int
) -> None:
    """Seconds per epoch of K lecture models (784-H-10, sigmoid, softmax + cross-entropy, SGD,
    batch 100; H taken from ``widths`` in turn), trained one after another and stacked (the
    narrower padded to the widest), after one warm-up epoch. GFLOP/s count the members' own
    arithmetic, not the padding."""
    print(f"{'K':>3} {'one at a time':>14} {'stacked':>9} {'speed-up':>9} {'GFLOP/s':>8}")
    for k in ks:
        seconds = {}
        sizes = [widths[i % len(widths)] for i in range(k)]
        for how in ("one at a time", "stacked"):
            models = [MLP(784, h, 10, init_std=0.1).to(device) for h in sizes]
            optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
            generators = [torch.Generator().manual_seed(i) for i in range(k)]
            stack = Stack(models, "sigmoid", optimizers) if how == "stacked" else None
            for epoch in range(1 + epochs):  # the first a warm-up: kernels chosen, caches filled
                if epoch == 1:
                    tic = time.perf_counter()
                if stack is not None:
                    stack.train_epoch("softmax_ce", splits.train, 100, generators)
                    continue
                for m, o, g in zip(models, optimizers, generators):
                    train_epoch(m, LOSSES["softmax_ce"], o, splits.train, 100, g)
            seconds[how] = (time.perf_counter() - tic) / epochs
        flops = 3 * 2 * len(splits.train) * sum(784 * h + h * 10 for h in sizes)
        one, stacked = seconds["one at a time"], seconds["stacked"]
        print(f"{k:>3} {one:>13.3f}s {stacked:>8.3f}s {one / stacked:>8.2f}x "
              f"{flops / stacked / 1e9:>8.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", nargs="*", default=["lecture", "wide"], choices=list(GRIDS))
    parser.add_argument("--launchers", nargs="+", default=["basic", "stacked", "joblib2"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="for the grids and the loop")
    parser.add_argument(
        "--loop",
        nargs="*",
        type=int,
        default=[],
        metavar="K",
        help="time the stacked loop alone for these numbers of members",
    )
    parser.add_argument(
        "--widths",
        nargs="+",
        type=int,
        default=[100],
        metavar="H",
        help="the loop's hidden widths, taken by the K members in turn",
    )
    parser.add_argument("--data", default="mnist_5k", help="the loop's data set")
    parser.add_argument("--root", default=None, help="data.root for mnist (--grids full)")
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads")
    for name in args.grids:
        common = [*GRIDS[name], f"epochs={args.epochs}", f"device={args.device}"]
        if args.root:
            common.append(f"data.root={Path(args.root).resolve()}")
        times, shown = {}, []
        for launcher in args.launchers:
            times[launcher], rss = wall([*common, *LAUNCHERS[launcher]], args.repeats)
            shown.append(f"{launcher} {times[launcher]:.1f}s ({rss:.0f} MB)")
        ratio = times["basic"] / times["stacked"] if {"basic", "stacked"} <= times.keys() else 0
        print(f"{name}, {args.epochs} epochs: {'  '.join(shown)}  basic/stacked {ratio:.2f}x")
    if args.loop:
        splits = data.load(args.data, device=device, val_size=0, root=args.root)
        print(f"the loop alone, {args.data} ({len(splits.train)} training images), widths "
              f"{args.widths}, {args.epochs} epochs each")  # fmt: skip
        loop_speed(args.loop, args.widths, splits, device, args.epochs)
    if device.type == "cpu":
        peak = matmul_peak(16, 100, 100)
        rate = stacked_rate(16, 100, epochs=2)
        print(f"matmul peak {peak:.1f} GFLOP/s; stacked loop (K=16, H=100) {rate:.1f} GFLOP/s, "
              f"{100 * rate / peak:.0f} % of it")  # fmt: skip


if __name__ == "__main__":
    main()
