"""Where a whole sweep command's time goes: ``python run.py <args>`` under cProfile, in a
fresh folder, its time split into the phases a sweep goes through.

    python bench/sweep_profile.py -m hidden=50,100 lr=0.05,0.1,0.5,1.0 init_std=0.01,0.1
    python bench/sweep_profile.py -m 'hidden=range(10,330,10)' lr=0.1,0.5 epochs=1

Each phase is the cumulative time of the functions named beside it; the profiler slows
Python code more than torch's kernels, so the shares matter more than the seconds (the
command's wall time without the profiler is printed first, for scale).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "run.py"

# phase -> (module file suffix, function name) whose cumulative times add up to it
PHASES = {
    "compose every job (Hydra)": [("hydra/_internal/config_loader_impl.py", "load_sweep_config")],
    "check every job": [("mlp_sweep/job.py", "check")],
    "train: batches": [("stacked.py", "train_epoch"), ("mlp_sweep/train.py", "train_epoch")],
    "train: evaluate": [("stacked.py", "evaluate"), ("mlp_sweep/train.py", "evaluate")],
    "per run: begin (.hydra/, metrics.json, loggers)": [("mlp_sweep/job.py", "begin")],
    "per epoch: checkpoint.pt + metrics.json": [("mlp_sweep/job.py", "end_epoch")],
    "per run: curves.png": [("mlp_sweep/plots.py", "plot_curves")],
    "per run: model.pt, history.csv, final record": [("mlp_sweep/job.py", "complete")],
    "the sweep's summary and figures": [("mlp_sweep/callbacks.py", "on_multirun_end")],
}


def cumulative(stats: pstats.Stats, where: str, name: str) -> float:
    return sum(
        row[3]
        for (path, _, func), row in stats.stats.items()  # type: ignore[attr-defined]
        if func == name and path.endswith(where)
    )


def main() -> None:
    args = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        subprocess.run([sys.executable, str(RUN), *args], cwd=tmp, check=True,
                       capture_output=True)  # fmt: skip
        plain = time.perf_counter() - tic
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        sys.argv = [str(RUN), *args]
        profile = cProfile.Profile()
        tic = time.perf_counter()
        profile.enable()
        try:
            runpy.run_path(str(RUN), run_name="__main__")
        except SystemExit as stop:
            if stop.code:
                raise
        finally:
            profile.disable()
        profiled = time.perf_counter() - tic
    stats = pstats.Stats(profile)
    print(f"python run.py {' '.join(args)}")
    print(f"wall time {plain:.1f} s; under the profiler {profiled:.1f} s, split as:")
    seen = 0.0
    rows = []
    for phase, functions in PHASES.items():
        seconds = sum(cumulative(stats, where, name) for where, name in functions)
        rows.append((phase, seconds))
    # "complete" includes curves.png: shown apart.
    per_run = dict(rows)
    per_run["per run: model.pt, history.csv, final record"] -= per_run["per run: curves.png"]
    for phase, seconds in per_run.items():
        seen += seconds
        print(f"  {phase:<48} {seconds:6.1f} s  {100 * seconds / profiled:4.0f} %")
    rest = profiled - seen
    print(f"  {'the rest (imports, start-up, Hydra, logging)':<48} {rest:6.1f} s  "
          f"{100 * rest / profiled:4.0f} %")  # fmt: skip


if __name__ == "__main__":
    main()
