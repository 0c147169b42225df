"""What each figure costs to draw: a run's ``curves.png``, a sweep's ``summary.png`` and a
search's study figures, each drawn and saved in one process (the figures' process of a sweep
does the same work), on made-up records of a fixed seed.

    python bench/figures.py                      # this checkout
    python bench/figures.py --checkout ../other  # and another, side by side, alternating

Prints the least milliseconds of each figure over ``--repeats`` draws (after one draw that
imports what it needs), per checkout, and the Python function calls of one draw. CPU time,
not wall time: the figures' process shares the cores with training, so its CPU is what a sweep
pays. The calls do not vary from run to run: on a noisy machine, where the milliseconds do,
they compare two checkouts' work.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def measure(repeats: int) -> dict[str, float]:
    """Milliseconds (the least CPU time of ``repeats`` draws: the one least disturbed by
    other work on the machine) of each figure, drawn by the package on sys.path."""
    import numpy as np
    import optuna
    import pandas as pd

    from mlp_sweep import plots

    assert Path(plots.__file__).is_relative_to(sys.path[0]), plots.__file__
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp())  # removed by the caller (see main)

    def history(epochs: int) -> pd.DataFrame:
        e = np.arange(1.0, epochs + 1)
        return pd.DataFrame(
            {"epoch": e, "train_loss": 2 / e, "val_loss": 2.1 / e + rng.random(epochs) / 10,
             "train_acc": 1 - 0.5 / e, "val_acc": 0.9 - 0.5 / e - rng.random(epochs) / 10}
        )  # fmt: skip

    def sweep(runs: int, params: list[str]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        names = [f"{i}: " + " ".join(f"{p}={i}" for p in params) for i in range(runs)]
        table = pd.DataFrame({"legend": names}, index=names)
        for p in params:
            table[p] = rng.choice([0.01, 0.1, 0.5, 1.0], runs)
        table["val_acc"] = rng.random(runs)
        return table, {name: history(20) for name in names}

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 1, log=True)
        hidden = trial.suggest_int("hidden", 16, 512)
        sgd = trial.suggest_categorical("optimizer", ["sgd", "adam"]) == "sgd"
        return float(np.log(lr) + hidden / 1000 + sgd)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=20)
    curves = history(20)
    three, sixteen = sweep(3, ["hidden"]), sweep(16, ["lr", "hidden", "init_std"])
    figures = {
        "curves.png (20 epochs)": lambda: plots.plot_curves(curves, folder / "c.png", "0: x=1"),
        "summary.png (3 runs, 1 parameter)": lambda: plots.save(
            plots.summary_figure(*three, ["hidden"], "val_acc"), folder / "s3.png"
        ),
        "summary.png (16 runs, 3 parameters)": lambda: plots.save(
            plots.summary_figure(*sixteen, ["lr", "hidden", "init_std"], "val_acc"),
            folder / "s16.png",
        ),
        "study figures (20 trials, 3 parameters)": lambda: plots.plot_study(study, folder),
    }
    result = {}
    for name, draw in figures.items():
        draw()  # imports, caches
        times = []
        for _ in range(repeats):
            start = time.process_time()
            draw()
            times.append(time.process_time() - start)
        profile = cProfile.Profile()
        profile.runcall(draw)
        calls = pstats.Stats(profile).total_calls
        result[name] = (1000 * min(times), calls)
    return result


def a_checkout(path: str) -> Path:
    """A checkout of the project: a folder holding its package."""
    folder = Path(path).resolve()
    if not (folder / "mlp_sweep" / "plots.py").is_file():
        raise argparse.ArgumentTypeError(f"{path} is no checkout of mlp_sweep")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=a_checkout, action="append", default=[])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the checkouts")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # in this checkout
    args = parser.parse_args()
    if args.measure:
        sys.path.insert(0, str(args.measure))  # its package, before any installed one
        with tempfile.TemporaryDirectory() as tmp:
            tempfile.tempdir = tmp  # the figures' folder, removed with it
            print(json.dumps(measure(args.repeats)))
        return
    checkouts = list(dict.fromkeys([HERE, *args.checkout]))  # each once
    rows: dict[str, dict[Path, list[list[float]]]] = {}
    for _ in range(args.rounds):
        for checkout in checkouts:
            command = [sys.executable, "-P", __file__, "--measure", str(checkout)]
            out = subprocess.run(
                [*command, "--repeats", str(args.repeats)], capture_output=True, text=True
            )
            if out.returncode:
                sys.exit(f"{checkout}: {out.stderr.strip()}")
            for name, measured in json.loads(out.stdout.splitlines()[-1]).items():
                rows.setdefault(name, {}).setdefault(checkout, []).append(measured)
    print("| figure | " + " | ".join(str(c) for c in checkouts) + " |")
    print("|---|" + "---|" * len(checkouts))
    for name, by in rows.items():
        cells = [
            ", ".join(f"{ms:.0f}" for ms, _ in by[c]) + f" ms ({by[c][-1][1]:,} calls)"
            for c in checkouts
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
