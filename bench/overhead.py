"""What the framework around training costs: whole commands side by side in one run, each
against ``python -c "import torch"`` (T0) on the same machine, with its peak RSS.

    python bench/overhead.py                  # commands that train nothing, the README's first
                                              # command, loading the default data set
    python bench/overhead.py --many           # also the 256-job grid of one-epoch runs
    python bench/overhead.py --lecture        # also the 16-job lecture grid, basic vs stacked
    python bench/overhead.py --search         # also a search of 10 trials of 5 epochs
    python bench/overhead.py --grid-repeats 2 # the best of 2 runs of each grid
    python bench/overhead.py --compose        # only: a grid's jobs composed in-process
    python bench/overhead.py --exit           # only: how long a process takes to end
    python bench/overhead.py --checkout DIR   # the same, of another checkout with its .venv
                                              # (its own package, even through a linked one)

Each command runs in a fresh temporary folder; the best of ``--repeats`` is kept. The data
set's load time is measured inside a new process, from the cache that the README's command
filled.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = str(Path(__file__).resolve().parent.parent / "run.py")
CLI = str(Path(sys.executable).with_name("mlp-sweep"))  # installed beside this Python
PY = sys.executable
LOAD = (
    "import time, torch; from mlp_sweep import data; t = time.perf_counter(); "
    "data.load('mnist_5k', device=torch.device('cpu'), val_size=500); "
    "print(time.perf_counter() - t)"
)
MANY = ["hidden=range(16,528,16)", "lr=0.05,0.1,0.2,0.5", "init_std=0.01,0.1", "epochs=1"]
SEARCH = ["hparams_search=optuna", "hydra.sweeper.n_trials=10", "epochs=5"]
LAUNCHERS = ("basic", "stacked")
LECTURE = ["hidden=50,100", "lr=0.05,0.1,0.5,1.0", "init_std=0.01,0.1", "epochs=20"]


def timed(
    command: list[str], cwd: Path, repeats: int, fresh: str | None = None
) -> tuple[float, float, str]:
    """The best wall time of ``command`` in ``cwd`` (the folder ``fresh`` in it removed before
    each run), its largest peak RSS in MB, and the output of its last run."""
    best, peak, out = float("inf"), 0.0, ""
    log = cwd / ".bench-output"
    for _ in range(repeats):
        if fresh is not None:
            shutil.rmtree(cwd / fresh, ignore_errors=True)
        with log.open("w") as sink:
            tic = time.perf_counter()
            proc = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - tic
        out = log.read_text()
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"{' '.join(command)} failed:\n{out[-2000:]}")
        best, peak = min(best, seconds), max(peak, usage.ru_maxrss / 1024)
    return best, peak, out


def compose(arguments: list[str]) -> None:
    """A grid's jobs composed in this process by Hydra and by :class:`JobComposer`."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    from mlp_sweep.app import CONFIG_DIR
    from mlp_sweep.compose import JobComposer

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(CONFIG_DIR))
    master = loader.load_configuration("config", arguments, run_mode=RunMode.MULTIRUN)
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    ways = {
        "Hydra": lambda: lambda j: loader.load_sweep_config(master, j),
        "JobComposer": lambda: JobComposer(loader, master).compose,  # a fresh one each time
    }
    for name, maker in ways.items():
        seconds = float("inf")
        repeats = 1 if name == "Hydra" else 3  # Hydra: about 15 s a pass
        for _ in range(repeats):
            make = maker()
            tic = time.perf_counter()
            for job in jobs:
                make(job)
            seconds = min(seconds, time.perf_counter() - tic)
        each = seconds / len(jobs) * 1e3
        best = f"best of {repeats}" if repeats > 1 else "one pass"
        print(f"{name}: {len(jobs)} jobs in {seconds:.2f} s, {each:.1f} ms a job ({best})")


def exit_cost() -> None:
    """How long a process takes to end after its last line, with and without gc.freeze()
    (best of 5 each): what Python's shutdown costs once torch and its compiler stack are in."""
    for imports in ("torch", "torch, torch._dynamo", "pandas, matplotlib.backends.backend_agg"):
        for freeze in ("", "import gc; gc.freeze(); "):
            code = f"import {imports}, time; {freeze}print(time.time())"
            best = float("inf")
            for _ in range(5):
                out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
                best = min(best, time.time() - float(out.stdout.split()[-1]))
            print(f"import {imports:42} {'gc.freeze()' if freeze else 'as is':11} {best:.3f} s")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be a whole number >= 1")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--grid-repeats", type=_positive, default=1, help="runs of each grid (--many, --lecture)"
    )
    parser.add_argument("--many", action="store_true", help="the 256-job grid too")
    parser.add_argument("--lecture", action="store_true", help="the lecture grid, basic/stacked")
    parser.add_argument("--search", action="store_true", help="a search of 10 short trials")
    parser.add_argument("--compose", action="store_true", help="only: composing the 256-job grid")
    parser.add_argument("--exit", action="store_true", help="only: the cost of a process's end")
    parser.add_argument(
        "--checkout",
        type=Path,
        help="time another checkout's run.py and mlp-sweep, with the Python of its .venv "
        "(an earlier commit, for a before/after table)",
    )
    args = parser.parse_args()
    global RUN, CLI, PY
    checkout = Path(RUN).parent
    if args.checkout is not None:
        checkout = args.checkout.resolve()
        python = checkout / ".venv" / "bin" / "python"
        RUN, CLI, PY = str(checkout / "run.py"), str(python.with_name("mlp-sweep")), str(python)
    # Every command imports the checkout's own package, even where its .venv is another
    # checkout's (a linked one) whose editable install points there.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, (str(checkout), os.environ.get("PYTHONPATH")))
    )
    sys.path.insert(0, str(checkout))  # --compose runs here
    if args.compose:
        compose(MANY)
        return
    if args.exit:
        exit_cost()
        return

    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        here = Path(tmp)

        def row(
            name: str,
            command: list[str],
            target: str,
            repeats: int = args.repeats,
            fresh: str | None = None,
        ) -> float:
            seconds, rss, _ = timed(command, here, repeats, fresh)
            rows.append((name, seconds, rss, target))
            return seconds

        t0 = row("T0: python -c 'import torch'", [PY, "-c", "import torch"], "")
        for flag in (["--help"], ["--cfg", "job"], ["--info"]):
            row(f"run.py {' '.join(flag)}", [PY, RUN, *flag], "<= 0.5 T0")
        completion = ["env", "COMP_LINE=python run.py hidd", PY, RUN, "-sc", "query=bash"]
        row("run.py -sc query=bash", completion, "<= 0.5 T0")
        readme = [PY, RUN, "-m", "hidden=50,100,200", "hydra.sweep.dir=readme"]
        row("README: run.py -m hidden=50,100,200", readme, f"<= T0 + 3.5 s = {t0 + 3.5:.1f} s", 1)
        shutil.rmtree(here / "readme", ignore_errors=True)
        row("README: run.py -m hidden=50,100,200", readme, f"<= T0 + 3.5 s = {t0 + 3.5:.1f} s", 1)
        row("mlp-sweep collect readme", [CLI, "collect", "readme"], "<= 0.5 T0")
        shutil.copytree(here / "readme", here / "again")
        row("mlp-sweep compare readme again", [CLI, "compare", "readme", "again"], "<= 0.5 T0")
        loads = [float(timed([PY, "-c", LOAD], here, 1)[2].split()[-1]) for _ in range(3)]
        if args.many:
            many = [PY, RUN, "-m", *MANY, "hydra.sweep.dir=many"]
            target = f"<= 14 T0 = {14 * t0:.0f} s"
            row("256 one-epoch jobs", many, target, args.grid_repeats, "many")
        if args.search:  # its study and trials in outputs/, removed before each run
            row("search: 10 trials of 5 epochs", [PY, RUN, *SEARCH], "", fresh="outputs")
        if args.lecture:
            for launcher in LAUNCHERS:
                grid = [PY, RUN, "-m", *LECTURE, f"hydra/launcher={launcher}"]
                command = [*grid, f"hydra.sweep.dir={launcher}"]
                row(f"lecture grid, {launcher}", command, "", args.grid_repeats, launcher)

    print("| command | wall | / T0 | peak RSS | target |\n|---|---|---|---|---|")
    for name, seconds, rss, target in rows:
        print(f"| {name} | {seconds:.2f} s | {seconds / t0:.2f} | {rss:.0f} MB | {target} |")
    print(f"\nloading mnist_5k in a new process, from its cache: {min(loads):.3f} s (target 0.1 s)")
    if args.lecture:
        basic, stacked = (
            next(r[1] for r in rows if r[0].endswith(k)) for k in ("basic", "stacked")
        )
        print(f"lecture grid: stacked {basic / stacked:.2f}x basic (target 2x)")


if __name__ == "__main__":
    main()
