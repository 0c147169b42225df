"""mlp_sweep.sweep, load, history and plot: sweeps from a notebook, results as DataFrames; and
the example notebook, run top to bottom in a real Jupyter kernel."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import REPO, run_in_process
from matplotlib.figure import Figure
from nbclient import NotebookClient

import mlp_sweep
from mlp_sweep.errors import BadInput, SweepFailed

EXAMPLE = REPO / "examples" / "l09_sweep.ipynb"


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A 2-job grid of 2 epochs run by sweep(): its folder, and the table sweep() returned."""
    folder = tmp_path_factory.mktemp("notebook") / "grid"
    return folder, mlp_sweep.sweep("hidden=20,40", "epochs=2", dir=folder)


SEARCH = ("hparams_search=optuna", "epochs=1")


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    """A search of one trial run by sweep() into a dir whose name has a comma and URL
    characters: the current folder it ran from, the dir, and the table sweep() returned."""
    cwd = tmp_path_factory.mktemp("search")
    folder = cwd / "a search, 50% sure? #1"
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return cwd, folder, mlp_sweep.sweep(*SEARCH, "hydra.sweeper.n_trials=1", dir=folder)
    finally:
        os.chdir(before)


def test_import_mlp_sweep_leaves_pandas_and_torch_until_a_function_is_used():
    code = (
        "import sys, mlp_sweep\n"
        "print(sorted({'pandas', 'torch', 'matplotlib'} & set(sys.modules)))\n"
        "mlp_sweep.load\n"
        "print(sorted({'pandas', 'torch', 'matplotlib'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['pandas']"]


def test_drawing_a_summary_keeps_the_notebooks_matplotlib_backend():
    # Jupyter's kernel names its inline backend in MPLBACKEND; a module that chose Agg on
    # import took it away, and pyplot's figures stopped showing in the notebook.
    code = "import matplotlib, mlp_sweep.plots; print(matplotlib.get_backend())"
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "svg"


def test_sweep_returns_the_table_of_the_sweeps_summary_csv(grid):
    folder, table = grid
    assert list(table["run"]) == ["0", "1"] and list(table["hidden"]) == [20, 40]
    assert set(table["status"]) == {"complete"}
    assert table.to_csv(index=False) == (folder / "summary.csv").read_text()


def test_sweep_trains_as_run_py_does_stacked_by_default(grid, tmp_path):
    folder, table = grid
    first = json.loads((folder / "0" / "metrics.json").read_text())
    assert first["stacked"]["members"] == 2  # the grid's default launcher
    result = run_in_process("-m", "hidden=20,40", "epochs=2", "hydra.sweep.dir=cli", cwd=tmp_path)
    assert result.code == 0, result.err
    command = pd.read_csv(tmp_path / "cli" / "summary.csv")
    metrics = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(table[metrics], command[metrics])


def test_load_agrees_with_summary_csv_on_a_run_and_on_a_folder_above_sweeps(grid):
    folder, table = grid
    one = mlp_sweep.load(folder / "1")
    assert len(one) == 1 and one.loc[0, "val_acc"] == table.loc[1, "val_acc"]
    above = mlp_sweep.load(folder.parent)  # the sweep's runs, named by their path below
    assert list(above["run"]) == ["grid/0", "grid/1"]
    assert list(above["val_acc"]) == list(table["val_acc"])


def test_load_refuses_a_folder_without_runs_in_one_line(tmp_path):
    with pytest.raises(BadInput, match=r"^no run folders under .*empty$"):
        (tmp_path / "empty").mkdir()
        mlp_sweep.load(tmp_path / "empty")
    with pytest.raises(BadInput, match=r"^not a folder: .*missing$"):
        mlp_sweep.load(tmp_path / "missing")


def test_history_has_one_row_per_run_and_epoch_with_its_swept_values(grid):
    folder, _ = grid
    curves = mlp_sweep.history(folder)
    assert list(curves.columns[:3]) == ["sweep", "run", "hidden"]
    assert list(zip(curves["run"], curves["hidden"], curves["epoch"])) == [
        ("0", 20, 1),
        ("0", 20, 2),
        ("1", 40, 1),
        ("1", 40, 2),
    ]
    on_disk = pd.read_csv(folder / "1" / "history.csv")
    mine = curves[curves["run"] == "1"][list(on_disk.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, on_disk, check_dtype=False)


def test_plot_returns_the_summary_figure_which_shows_itself_as_png(grid):
    folder, _ = grid
    figure = mlp_sweep.plot(folder)
    assert isinstance(figure, Figure)
    assert figure._repr_png_().startswith(b"\x89PNG")  # how IPython shows it without pyplot


def test_a_bad_override_raises_the_line_the_command_prints(tmp_path):
    said = run_in_process("-m", "model=foo", cwd=tmp_path).err.strip()
    assert said.startswith("error: model=foo is invalid")
    with pytest.raises(BadInput) as refused:
        mlp_sweep.sweep("model=foo", dir=tmp_path / "never")
    assert str(refused.value) == said.removeprefix("error: ")
    assert not (tmp_path / "never").exists()


def test_the_folder_is_named_once(tmp_path):
    with pytest.raises(BadInput, match="give one"):
        mlp_sweep.sweep("hidden=20", f"hydra.sweep.dir={tmp_path}", dir=tmp_path)


def test_a_sweep_whose_run_diverged_raises_its_line_naming_the_summary(tmp_path):
    with pytest.raises(SweepFailed, match=r"^1 of 2 jobs failed; .*summary\.md$"):
        mlp_sweep.sweep("lr=1e38,0.1", "hidden=20", "epochs=1", dir=tmp_path / "s")
    table = mlp_sweep.load(tmp_path / "s")
    assert list(table["status"]) == ["failed", "complete"]


def test_a_search_keeps_its_study_in_dir_and_continues_there(search, monkeypatch):
    cwd, folder, first = search
    monkeypatch.chdir(cwd)
    assert list(first["trial"]) == [0]
    assert (folder / "optuna-mnist_5k-val_acc.db").is_file()
    again = mlp_sweep.sweep(*SEARCH, "hydra.sweeper.n_trials=2", dir=folder)
    assert list(again["trial"]) == [0, 1]
    assert again.loc[0, "val_acc"] == first.loc[0, "val_acc"]  # kept, not trained again
    assert again.to_csv(index=False) == (folder / "summary.csv").read_text()
    assert not (cwd / "outputs").exists()  # nothing of it outside its folder


def test_a_search_keeps_its_study_in_a_dir_whose_name_has_url_characters(search):
    _, folder, table = search
    assert list(table["trial"]) == [0]
    assert (folder / "optuna-mnist_5k-val_acc.db").is_file()


def test_an_interrupt_stops_the_sweep_as_ctrl_c_does_and_the_same_call_finishes_it(tmp_path):
    folder = tmp_path / "s"
    overrides = ("hidden=20,40", "epochs=40", "hydra/launcher=basic")  # long enough to interrupt

    def interrupt_once_job_0_has_finished_an_epoch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (folder / "0" / "checkpoint.pt").exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_job_0_has_finished_an_epoch, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as stopped:
        mlp_sweep.sweep(*overrides, dir=folder)
    assert str(stopped.value) == (  # job 0 was stopped; job 1 had not started
        "interrupted; no run had finished; the runs are kept as they stopped, and the summary "
        "lists them"
    )
    table = pd.read_csv(folder / "summary.csv")  # written by the sweep as it stopped
    assert list(table["status"]) == ["interrupted"] and table.loc[0, "epochs_run"] < 40
    assert not (folder / "1").exists()  # no later job started
    finished = mlp_sweep.sweep(*overrides, dir=folder)
    assert list(finished["status"]) == ["complete", "complete"]
    assert list(finished["epochs_run"]) == [40, 40]


def test_the_example_notebook_runs_in_a_kernel_and_shows_its_figures(tmp_path):
    notebook = nbformat.read(EXAMPLE, as_version=4)
    client = NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises at the first cell that fails
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(figures) == 2  # the seaborn curves, and plot()'s summary figure
    # The widget's stored text is its first state (0/12); the cell also keeps where it ended.
    said = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "12/12" in said
    table = pd.read_csv(tmp_path / "outputs" / "sweeps" / "l09" / "summary.csv")
    assert len(table) == 12 and set(table["status"]) == {"complete"}


def _state(pid: int) -> str | None:
    """A process's state letter from /proc (``Z`` once it has exited and awaits its
    parent), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_the_sweep_stops_with_the_process_that_called_sweep_when_that_one_is_killed(tmp_path):
    folder = tmp_path / "s"
    code = (
        "import mlp_sweep, sys\n"
        "mlp_sweep.sweep('hidden=20,40', 'epochs=200', 'hydra/launcher=basic', dir=sys.argv[1])\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=tmp_path)
    children: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (folder / "0" / "checkpoint.pt").exists():
            time.sleep(0.05)
        children = Path(f"/proc/{caller.pid}/task/{caller.pid}/children").read_text().split()
        assert len(children) == 1
        caller.kill()  # as a kernel restart, or kill -9, ends it: no chance to stop the sweep
        caller.wait()
        child = int(children[0])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _state(child) not in (None, "Z"):
            time.sleep(0.1)
        assert _state(child) in (None, "Z"), "the sweep trains on with nobody to see it"
    finally:
        caller.kill()
        for pid in children:
            if _state(int(pid)) not in (None, "Z"):
                os.kill(int(pid), signal.SIGKILL)
    run = json.loads((folder / "0" / "metrics.json").read_text())
    assert run["status"] == "interrupted" and run["epochs_run"] < 200
    assert not (folder / "1").exists()


def test_dir_must_name_a_sweeps_own_folder(tmp_path, monkeypatch, grid):
    monkeypatch.chdir(tmp_path)
    for folder, says in [
        ("", "dir='' names no folder"),
        (".", f"dir='.' is {tmp_path}, the current folder"),
        (tmp_path.parent, f"dir={str(tmp_path.parent)!r} is {tmp_path.parent}, above the current"),
        (grid[0].parent, f"dir={str(grid[0].parent)!r} holds the runs of other sweeps"),
        (grid[0] / "0", f"dir={str(grid[0] / '0')!r} is a run's folder"),
    ]:
        with pytest.raises(BadInput, match=f"^{re.escape(says)}.*; give a folder of its own"):
            mlp_sweep.sweep("hidden=20", "epochs=1", dir=folder)
    assert list(tmp_path.iterdir()) == []


def test_load_gives_each_column_the_type_reading_summary_csv_gives_it(grid):
    folder, table = grid
    on_disk = pd.read_csv(folder / "summary.csv", dtype={"run": str})
    assert dict(mlp_sweep.load(folder).dtypes) == dict(on_disk.dtypes)
    assert dict(table.dtypes) == dict(on_disk.dtypes)


def test_the_bar_counts_finished_runs_only_and_never_passes_its_total():
    from mlp_sweep.notebook import _Progress

    events = [
        {"event": "start", "dir": "s", "total": 2, "done": 1, "unit": "job", "best": None},
        {"event": "job", "run": "s/0", "status": "interrupted", "best": None},
        {"event": "job", "run": "s/0", "status": "complete", "best": None},
        {"event": "job", "run": "s/1", "status": "complete", "best": None},
    ]
    progress = _Progress(io.StringIO("".join(json.dumps(e) + "\n" for e in events[:2])))
    progress.update()
    assert progress.bar.n == 1  # an interrupted run is not done
    progress.reader = io.StringIO("".join(json.dumps(e) + "\n" for e in events[2:]))
    progress.update()
    assert progress.bar.n == progress.bar.total == 2
    progress.close(keep=False)


def test_a_folder_of_another_type_is_refused_naming_the_argument():
    for call in (lambda: mlp_sweep.sweep("hidden=20", dir=3), lambda: mlp_sweep.sweep(dir=b"x")):
        with pytest.raises(BadInput, match=r"^dir= takes a folder as str or Path, or None; not "):
            call()
    for folder in (3, None):
        with pytest.raises(BadInput, match=r"^folder takes a folder as str or Path; not "):
            mlp_sweep.load(folder)


def test_a_folder_in_use_is_refused_naming_dir_as_the_caller_gave_it(tmp_path):
    import fcntl

    from mlp_sweep import records

    folder = tmp_path / "s"
    folder.mkdir()
    with open(folder / records.SWEEP_LOCK, "w") as lock:  # as a sweep running there holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("12345\n")
        lock.flush()
        with pytest.raises(BadInput) as refused:
            mlp_sweep.sweep("hidden=20", "epochs=1", dir=folder)
    assert str(refused.value) == (
        f"dir={folder} is in use by another sweep (pid 12345); wait for it or choose another folder"
    )
    assert [p.name for p in folder.iterdir()] == [records.SWEEP_LOCK]


def test_the_commands_warnings_are_shown_to_the_caller_without_its_job_lines(tmp_path, capsys):
    mlp_sweep.sweep(
        "hparams_search=optuna_pruned",
        "hydra.sweeper.storage=null",
        "hydra.sweeper.n_trials=1",
        "epochs=1",
        dir=tmp_path / "s",
    )
    said = capsys.readouterr()
    lines = (said.out + said.err).splitlines()
    assert "warning: the study is in memory, out of the trials' reach: no pruning" in lines
    assert not [line for line in lines if line.startswith("trial 0")]  # no per-job lines
