"""`python run.py -m ...` end to end in a temporary folder (as a subprocess where it matters)."""

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from conftest import REPO


def sweep_dirs(root: Path) -> list[Path]:
    return sorted((root / "outputs" / "sweeps").iterdir())


def test_grid_leaves_a_folder_per_job_and_a_summary_with_a_row_each(run_app, tmp_path):
    result = run_app("-m", "hidden=50,100,200", "epochs=3")
    assert result.code == 0, result.err
    (sweep,) = sweep_dirs(tmp_path)
    jobs = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    assert jobs == ["0", "1", "2"]
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["hidden"]) == [50, 100, 200]
    assert (summary["status"] == "complete").all() and (summary["epochs_run"] == 3).all()
    for job in jobs:
        m = json.loads((sweep / job / "metrics.json").read_text())
        row = summary[summary["run"] == int(job)].iloc[0]
        assert row["val_acc"] == m["final"]["val_acc"] and row["hidden"] == m["params"]["hidden"][0]
        assert (sweep / job / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"
    report = (sweep / "summary.md").read_text()
    assert "ranked by val_acc" in report and "Best: run" in report
    assert report.strip() in result.out  # the ranked table is printed at the end


def test_eight_run_grid_has_eight_rows_with_each_swept_column(run_app, tmp_path):
    args = ["model=sigmoid_mse,softmax_ce", "init_std=0.01,0.1", "batch_size=32,100", "epochs=1"]
    assert run_app("-m", *args).code == 0
    summary = pd.read_csv(sweep_dirs(tmp_path)[0] / "summary.csv")
    assert len(summary) == 8
    combos = set(zip(summary["model"], summary["init_std"], summary["batch_size"]))
    assert len(combos) == 8


def test_runs_that_differ_only_in_seed_are_grouped(run_app, tmp_path):
    assert run_app("-m", "hidden=20,40", "seed=1,2", "epochs=1").code == 0
    report = (sweep_dirs(tmp_path)[0] / "summary.md").read_text()
    section = report.split("differ only in seed")[1]
    rows = [line for line in section.splitlines() if line.startswith("|") and "±" in line]
    assert len(rows) == 2  # hidden=20 and hidden=40, two seeds each


def test_two_sweeps_started_together_get_separate_folders(tmp_path):
    command = [sys.executable, str(REPO / "run.py"), "-m", "hidden=10", "epochs=1"]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    sweeps = sweep_dirs(tmp_path)
    assert len(sweeps) == 2
    assert all(len(list(s.glob("*/metrics.json"))) == 1 for s in sweeps)


def test_a_second_grid_sweep_into_a_folder_in_use_is_refused_and_changes_nothing(
    run_script, tmp_path
):
    folder = tmp_path / "s"
    grid = ["-m", "hidden=20,40", "epochs=2000", "hydra/launcher=basic"]
    grid.append(f"hydra.sweep.dir={folder}")
    with _sweeping(grid, tmp_path, until=folder / "0" / "checkpoint.pt") as first:
        before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
        second = run_script(*grid[:-1], "hydra.sweep.dir=s", timeout=60)
        assert second.code == 2
        assert second.err.strip().splitlines()[-1] == (
            f"error: hydra.sweep.dir=s is in use by another sweep (pid {first.pid}); "
            "wait for it or choose another folder"
        )
        assert not (folder / "1").exists()
        changed = {p for p, t in before.items() if p.exists() and p.stat().st_mtime_ns != t}
        assert changed <= set((folder / "0").iterdir())  # the first sweep's own run only


def test_a_sweep_refused_for_a_folder_in_use_reports_and_rewrites_nothing_of_its_runs(
    run_script, tmp_path
):
    """Runs of the sweep in the folder that end while the refused one starts are not its own:
    it reports none of them, and leaves the summary to their sweep (here it would rank them
    by its own objective)."""
    folder = tmp_path / "s"
    grid = ["-m", "epochs=1,2,3,4,200", "hydra/launcher=basic", f"hydra.sweep.dir={folder}"]
    with _sweeping(grid, tmp_path, until=folder / "1" / "checkpoint.pt"):
        second = run_script(*grid[:-1], "objective=val_loss", "hydra.sweep.dir=s", timeout=60)
        assert second.code == 2
        assert "in use by another sweep" in second.err
        assert [line for line in second.out.splitlines() if line.startswith("job ")] == []
        summary = folder / "summary.md"
        assert not summary.exists() or "val_loss (minimize)" not in summary.read_text()


@contextlib.contextmanager
def _sweeping(grid: list[str], cwd: Path, until: Path) -> Iterator[subprocess.Popen]:
    """`python run.py *grid` running in ``cwd`` once ``until`` exists; interrupted after."""
    sweep = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *grid],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not until.exists():
            time.sleep(0.05)
        yield sweep
    finally:
        sweep.send_signal(signal.SIGINT)
        sweep.wait(60)
