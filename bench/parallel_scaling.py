"""Parallel scaling: the same grid with the joblib launcher, one worker against two.

Each worker is a process of its own; mlp_sweep gives each job ``cores / workers`` torch
threads (at least one), so one worker trains with every core and two workers share them.
Every sweep also pays a fixed cost that no worker count changes (start-up of the main process
and of the workers, the collected summary), so each setting runs a small and a large grid:
the difference gives the steady throughput, in jobs per minute, that a long sweep sees.

    python bench/parallel_scaling.py --jobs 8 24 --epochs 40 --repeats 2
"""

from __future__ import annotations

import argparse

from sweep_overhead import run_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=[8, 24], metavar=("SMALL", "LARGE"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2, help="keep the fastest of these")
    args = parser.parse_args()
    small, large = args.jobs
    run_grid(2, 1)  # once, so that every grid finds the data set in the cache
    print(f"grids of runs of {args.epochs} epochs on mnist_5k, joblib launcher")
    print(f"{'workers':>7} {'threads/job':>11} {f'wall s ({small})':>12} "
          f"{f'wall s ({large})':>12} {'jobs/min':>9}")  # fmt: skip
    throughput, whole = {}, {}
    for workers in (1, 2):
        launcher = ("hydra/launcher=joblib", f"hydra.launcher.n_jobs={workers}")
        wall_small, _ = run_grid(small, args.epochs, *launcher, repeats=args.repeats)
        wall_large, runs = run_grid(large, args.epochs, *launcher, repeats=args.repeats)
        if wall_large <= wall_small:
            raise SystemExit("the grids are too small to tell apart; give more jobs or epochs")
        throughput[workers] = (large - small) / (wall_large - wall_small) * 60
        whole[workers] = wall_large
        print(f"{workers:7d} {runs[0]['threads']:11d} {wall_small:12.2f} {wall_large:12.2f} "
              f"{throughput[workers]:9.1f}")  # fmt: skip
    print(f"two workers give {throughput[2] / throughput[1]:.2f}x the steady throughput of one; "
          f"{whole[1] / whole[2]:.2f}x over a whole {large}-job grid")  # fmt: skip


if __name__ == "__main__":
    main()
