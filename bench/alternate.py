"""One ``run.py`` command timed in this checkout and in another, alternating, so that both
see the same machine: on a shared machine a change of 10 % needs several runs a side.

    python bench/alternate.py --checkout ../before --repeats 6 -- \\
        hparams_search=optuna hydra.sweeper.n_trials=30 epochs=1

Each run starts in a fresh temporary folder, with this Python and the checkout's own package
(``PYTHONPATH``), so another checkout may be a worktree of an earlier commit whose ``.venv``
links to this one. Prints each checkout's wall times in order, their least and median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run_once(checkout: Path, arguments: list[str]) -> float:
    folder = tempfile.mkdtemp()
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    tic = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(checkout / "run.py"), *arguments],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - tic
    shutil.rmtree(folder, ignore_errors=True)
    if done.returncode != 0:
        sys.exit(f"{checkout}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, required=True, help="the other checkout")
    parser.add_argument("--repeats", type=int, default=4, help="runs of each checkout")
    parser.add_argument("arguments", nargs="+", help="run.py's arguments, after --")
    args = parser.parse_args()
    checkouts = [HERE, args.checkout.resolve()]
    times: dict[Path, list[float]] = {c: [] for c in checkouts}
    for repeat in range(args.repeats):
        for checkout in checkouts if repeat % 2 == 0 else checkouts[::-1]:
            times[checkout].append(run_once(checkout, args.arguments))
    print(f"python run.py {' '.join(args.arguments)}")
    for checkout, seconds in times.items():
        shown = " ".join(f"{s:.2f}" for s in seconds)
        print(
            f"{checkout}: {shown} s; least {min(seconds):.2f}, "
            f"median {statistics.median(seconds):.2f}"
        )


if __name__ == "__main__":
    main()
