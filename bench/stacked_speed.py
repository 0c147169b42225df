"""Stacked vs one-at-a-time: whole sweep commands side by side, and the stacked loop's
arithmetic rate against this machine's matrix-multiply peak.

Each grid runs as ``python run.py -m <grid>`` under ``hydra/launcher=basic`` and
``hydra/launcher=stacked`` (and joblib with 2 workers where asked), in the same run of this
script, best of ``--repeats``; then the stacked training loop alone is timed in-process and its
GFLOP/s compared with a float32 matmul of the same size class.

    python bench/stacked_speed.py --epochs 20 --repeats 3          # the issue's grids
    python bench/stacked_speed.py --grids lecture --epochs 5 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mlp_sweep import data
from mlp_sweep.model import MLP
from mlp_sweep.stacked import Stack

RUN = Path(__file__).resolve().parent.parent / "run.py"
GRIDS = {
    "lecture": ["hidden=50,100", "lr=0.05,0.1,0.5,1.0", "init_std=0.01,0.1"],
    "wide": ["hidden=50,100,200,400", "lr=0.05,0.1,0.5,1.0"],
    "many": ["hidden=range(10,330,10)", "lr=0.01,0.05,0.1,0.5,1,2,3,4"],
}
LAUNCHERS = {
    "basic": ["hydra/launcher=basic"],
    "stacked": ["hydra/launcher=stacked"],
    "joblib2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def wall(grid: list[str], launcher: list[str], epochs: int, repeats: int) -> float:
    """The best wall time of the whole command over ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tic = time.perf_counter()
            subprocess.run(
                [sys.executable, str(RUN), "-m", *grid, f"epochs={epochs}", *launcher,
                 "hydra.sweep.dir=g"],
                cwd=tmp, check=True, capture_output=True,
            )  # fmt: skip
            best = min(best, time.perf_counter() - tic)
    return best


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
    stack = Stack(models, "sigmoid")
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    generators = [torch.Generator().manual_seed(i) for i in range(k)]
    stack.train_epoch("softmax_ce", optimizers, splits.train, 100, generators)  # warm-up
    tic = time.perf_counter()
    for _ in range(epochs):
        stack.train_epoch("softmax_ce", optimizers, splits.train, 100, generators)
    seconds = time.perf_counter() - tic
    flops = 3 * 2 * len(splits.train) * (784 * width + width * 10) * k * epochs
    return flops / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", nargs="+", default=["lecture", "wide"], choices=list(GRIDS))
    parser.add_argument("--launchers", nargs="+", default=["basic", "stacked", "joblib2"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.grids:
        times = {
            launcher: wall(GRIDS[name], LAUNCHERS[launcher], args.epochs, args.repeats)
            for launcher in args.launchers
        }
        shown = "  ".join(f"{k} {v:.1f}s" for k, v in times.items())
        ratio = times["basic"] / times["stacked"] if {"basic", "stacked"} <= times.keys() else 0
        print(f"{name} grid, {args.epochs} epochs: {shown}  (basic/stacked {ratio:.2f}x)")
    peak = matmul_peak(16, 100, 100)
    rate = stacked_rate(16, 100, epochs=2)
    print(f"matmul peak {peak:.1f} GFLOP/s; stacked loop (K=16, H=100) {rate:.1f} GFLOP/s, "
          f"{100 * rate / peak:.0f} % of it")  # fmt: skip
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of any sweep command: {peak_rss:.0f} MB")


if __name__ == "__main__":
    main()
