"""Sweep overhead: what a grid of short runs costs beyond the training itself.

Runs ``python run.py -m hidden=... epochs=E`` (by default under Hydra's basic launcher: one
process, jobs one after another; ``--launcher stacked`` trains them together) in a temporary
folder, for a small and a large grid, and prints for each the
total wall time, the sum of the runs' own training time (``seconds.train`` in each
metrics.json) and the overhead per job: everything else (start-up, data loading, config
composition, logging, files, figures, the collected summary) over the number of jobs. The
two grids together split the overhead into a fixed part, paid once per sweep, and a part
paid by every job.

    python bench/sweep_overhead.py --jobs 5 20 --epochs 1 --repeats 3
    python bench/sweep_overhead.py --jobs 5 20 --epochs 1 --repeats 3 --launcher stacked
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "run.py"


def run_grid(jobs: int, epochs: int, *extra: str, repeats: int = 1) -> tuple[float, list[dict]]:
    """Wall time of a grid of ``jobs`` runs, the best of ``repeats`` (this machine is shared,
    so the fastest repeat is the one least disturbed), and the runs' metrics of that one."""
    hidden = ",".join(str(20 + 5 * i) for i in range(jobs))  # distinct, similar-sized jobs
    command = [sys.executable, str(RUN), "-m", f"hidden={hidden}", f"epochs={epochs}"]
    best: tuple[float, list[dict]] | None = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tic = time.perf_counter()
            subprocess.run([*command, "hydra.sweep.dir=grid", *extra], cwd=tmp, check=True,
                           capture_output=True)  # fmt: skip
            wall = time.perf_counter() - tic
            runs = [json.loads(p.read_text()) for p in Path(tmp).glob("grid/*/metrics.json")]
        assert len(runs) == jobs and all(r["status"] == "complete" for r in runs)
        if best is None or wall < best[0]:
            best = (wall, runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=[5, 20], metavar=("SMALL", "LARGE"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="keep the fastest of these")
    parser.add_argument("--launcher", default="basic", choices=["basic", "stacked"])
    args = parser.parse_args()
    launcher = f"hydra/launcher={args.launcher}"
    run_grid(2, 1)  # once, so that both grids find the data set in the cache
    overhead = {}
    print(f"grids of runs of {args.epochs} epoch(s) on mnist_5k, one process, {launcher}")
    print(f"{'jobs':>5} {'wall s':>8} {'train s':>8} {'overhead s':>11} {'per job s':>10}")
    for jobs in args.jobs:
        wall, runs = run_grid(jobs, args.epochs, launcher, repeats=args.repeats)
        train = sum(r["seconds"]["train"] for r in runs)
        overhead[jobs] = wall - train
        print(
            f"{jobs:5d} {wall:8.2f} {train:8.2f} {wall - train:11.2f} {(wall - train) / jobs:10.3f}"
        )
    small, large = args.jobs
    per_job = (overhead[large] - overhead[small]) / (large - small)
    print(f"fixed overhead per sweep {overhead[small] - per_job * small:.2f} s "
          f"(start-up, imports, the summary); added by each job {per_job:.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
