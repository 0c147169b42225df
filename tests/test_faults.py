"""Faults on real processes: Ctrl-C, kill -9, re-runs into the same folder, unwritable output."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, run_in_process

from mlp_sweep import cli, job
from mlp_sweep.errors import ConfigError

# Big enough that an epoch of mnist_5k takes a noticeable fraction of a second, and long
# enough that a run stopped after its second epoch has three more to go.
SLOW = ["hidden=[1500]", "epochs=5"]


def start(*args: str, cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for_epoch(metrics: Path, epoch: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Block until the run writing ``metrics`` has finished ``epoch`` epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if json.loads(metrics.read_text())["epochs_run"] >= epoch:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{metrics} never reached epoch {epoch}")


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def values(history: list[dict]) -> list[dict]:
    """Epoch records without their timings, which no two runs share."""
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history]


@pytest.fixture(scope="module")
def interrupted_grid(tmp_path_factory) -> Path:
    """A 3-job grid, one job at a time, stopped with SIGINT (Ctrl-C) while its second job
    trained. (test_stacked.py stops a stacked one.)"""
    root = tmp_path_factory.mktemp("interrupted")
    grid = ["-m", "hidden=[20],[1500],[30]", "epochs=5", "hydra/launcher=basic"]
    proc = start(*grid, "hydra.sweep.dir=grid", cwd=root)
    wait_for_epoch(root / "grid" / "1" / "metrics.json", 2, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    (root / "result.json").write_text(json.dumps({"code": proc.returncode, "out": out, "err": err}))
    return root


def test_ctrl_c_marks_the_run_interrupted_and_keeps_what_finished(interrupted_grid):
    result = read(interrupted_grid / "result.json")
    assert result["code"] == 130
    assert result["err"].strip().splitlines()[-1] == (
        "interrupted; finished runs and the summary are kept"
    )
    grid = interrupted_grid / "grid"
    assert read(grid / "0" / "metrics.json")["status"] == "complete"
    stopped = read(grid / "1" / "metrics.json")
    assert stopped["status"] == "interrupted" and 2 <= stopped["epochs_run"] < 5
    assert len(stopped["history"]) == stopped["epochs_run"]
    assert not (grid / "2").exists()
    summary = (grid / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and "interrupted" in summary[2] + summary[1]


def test_a_grid_rerun_into_its_folder_skips_complete_jobs_and_continues_the_rest(
    interrupted_grid, tmp_path
):
    grid = tmp_path / "grid"
    subprocess.run(["cp", "-a", str(interrupted_grid / "grid"), str(grid)], check=True)
    kept = (grid / "0" / "metrics.json").read_bytes()
    before = read(grid / "1" / "metrics.json")
    proc = start(
        "-m", "hidden=[20],[1500],[30]", "epochs=5", f"hydra.sweep.dir={grid}", cwd=tmp_path
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert (grid / "0" / "metrics.json").read_bytes() == kept  # not run again
    assert "complete already" in out + err
    resumed = read(grid / "1" / "metrics.json")
    assert resumed["status"] == "complete" and resumed["epochs_run"] == 5
    assert values(resumed["history"][: before["epochs_run"]]) == values(before["history"])
    assert read(grid / "2" / "metrics.json")["status"] == "complete"


def test_a_continued_runs_figure_is_never_its_earlier_attempts(
    interrupted_grid, tmp_path, monkeypatch
):
    """The run continued in job 1's folder loses its new curves.png (as with the process
    drawing it killed): the folder holds no curves.png of its earlier, shorter attempt, and
    `mlp-sweep collect` draws the one missing."""
    grid = tmp_path / "grid"
    subprocess.run(["cp", "-a", str(interrupted_grid / "grid"), str(grid)], check=True)
    assert (grid / "1" / "curves.png").is_file()  # the interrupted attempt's
    monkeypatch.setattr(job.drawing, "curves", lambda *args, **kwargs: None)  # lost
    grid_args = ["-m", "hidden=[20],[1500],[30]", "epochs=5", f"hydra.sweep.dir={grid}"]
    assert run_in_process(*grid_args, "hydra/launcher=basic", cwd=tmp_path).code == 0
    assert read(grid / "1" / "metrics.json")["epochs_run"] == 5
    assert not (grid / "1" / "curves.png").exists()
    monkeypatch.undo()
    assert cli.main(["collect", str(grid)]) == 0
    assert (grid / "1" / "curves.png").is_file()


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_result(tmp_path):
    proc = start(*SLOW, "hydra.run.dir=killed", cwd=tmp_path)
    wait_for_epoch(tmp_path / "killed" / "metrics.json", 2, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate()
    assert read(tmp_path / "killed" / "metrics.json")["status"] == "running"

    again = start(*SLOW, "hydra.run.dir=killed", cwd=tmp_path)
    again.communicate(timeout=300)
    assert again.returncode == 0
    straight = start(*SLOW, "hydra.run.dir=straight", cwd=tmp_path)
    straight.communicate(timeout=300)
    assert straight.returncode == 0
    resumed, uninterrupted = (
        read(tmp_path / "killed/metrics.json"),
        read(tmp_path / "straight/metrics.json"),
    )
    assert resumed["status"] == "complete"
    assert resumed["final"] == uninterrupted["final"]
    assert values(resumed["history"]) == values(uninterrupted["history"])


def test_ctrl_c_of_one_run_says_what_it_keeps_and_no_summary(tmp_path):
    proc = start(*SLOW, "hydra.run.dir=one", cwd=tmp_path)
    wait_for_epoch(tmp_path / "one" / "metrics.json", 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "interrupted; the run is kept in one as it stopped; hydra.run.dir=one continues it"
    )
    assert read(tmp_path / "one" / "metrics.json")["status"] == "interrupted"
    assert not list(tmp_path.rglob("summary*"))


@pytest.fixture
def ctrl_c():
    """SIGINT handled as in a terminal's command (a test worker may have it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class Dropped:
    """An object whose end presses Ctrl-C: Python drops the KeyboardInterrupt raised in a
    ``__del__`` ("Exception ignored in ..."), as it drops one raised in a weakref callback
    while torch is imported."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the drop
def test_a_ctrl_c_that_python_drops_stops_the_sweep_at_its_next_job(
    run_app, tmp_path, monkeypatch, ctrl_c
):
    real_load_data = job.load_data

    def load_data(cfg, device):  # as the first job starts training
        if list(cfg.hidden) == [20]:
            Dropped()  # made and ended here
        return real_load_data(cfg, device)

    monkeypatch.setattr(job, "load_data", load_data)
    grid = ["-m", "hidden=[20],[30]", "epochs=1", "hydra/launcher=basic", "hydra.sweep.dir=s"]
    result = run_app(*grid)
    assert result.code == 130, result.err
    assert result.err.strip().splitlines()[-1] == (
        "interrupted; finished runs and the summary are kept"
    )
    assert read(tmp_path / "s" / "0" / "metrics.json")["status"] == "complete"
    assert not (tmp_path / "s" / "1" / "metrics.json").exists()


def test_an_error_that_follows_ctrl_c_is_reported_as_the_interrupt(
    run_app, tmp_path, monkeypatch, ctrl_c
):
    def check(cfg):  # as Hydra's composition was: interrupted half-way, it failed another way
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise ConfigError("x is invalid: half-made") from None

    monkeypatch.setattr(job, "check", check)
    result = run_app("epochs=1")
    assert result.code == 130, result.err
    assert result.err.strip().splitlines() == [
        "interrupted; the run had not started; nothing was written"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["first metrics.json written", "loggers starting"])
@pytest.mark.parametrize("launcher", ["basic", "stacked"])
def test_ctrl_c_as_a_run_takes_its_folder_marks_it_interrupted(
    run_app, tmp_path, monkeypatch, where, launcher
):
    if where == "loggers starting":

        def start(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(job.loggers, "start", start)
    else:
        real_save = job.RunRecord.save

        def save(record):
            real_save(record)
            if record.data["status"] == "running" and not record.data["history"]:
                raise KeyboardInterrupt  # just after the first write

        monkeypatch.setattr(job.RunRecord, "save", save)
    result = run_app("-m", "epochs=1", f"hydra/launcher={launcher}", "hydra.sweep.dir=s")
    assert result.code == 130, result.err
    assert read(tmp_path / "s" / "0" / "metrics.json")["status"] == "interrupted"


def test_ctrl_c_in_a_runs_first_figure_import_marks_it_interrupted(run_app, tmp_path, monkeypatch):
    calls = []

    def curves(*args, **kwargs):  # Ctrl-C lands in `import matplotlib`; a second try then
        calls.append(1)  # finds the module half-made (AttributeError: no get_data_path)
        raise KeyboardInterrupt if len(calls) == 1 else AttributeError("get_data_path")

    monkeypatch.setattr(job.drawing, "curves", curves)
    result = run_app("epochs=1", "hydra.run.dir=r")
    assert result.code == 130
    assert result.err.strip().splitlines() == [
        "interrupted; the run is kept in r as it stopped; hydra.run.dir=r continues it"
    ]
    assert read(tmp_path / "r" / "metrics.json")["status"] == "interrupted"


@pytest.mark.parametrize("launcher", ["basic", "stacked"])
def test_ctrl_c_before_a_sweeps_first_run_says_nothing_was_written(
    run_app, tmp_path, monkeypatch, launcher
):
    def prepare(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "prepare", prepare)
    result = run_app("-m", "hidden=20,30", "epochs=1", f"hydra/launcher={launcher}")
    assert result.code == 130
    assert result.err.strip().splitlines()[-1] == "interrupted; no run had started"


def test_logging_after_a_refused_run_does_not_write_into_its_removed_folder(tmp_path):
    # Torch logs as the process exits (an atexit hook); the run's log file was to be there.
    code = (
        "import logging, sys\n"
        "from mlp_sweep import app\n"
        "sys.argv = ['run.py', 'lr=-1']\n"
        "try:\n    app.main()\nexcept SystemExit:\n    pass\n"
        "logging.getLogger('any').warning('at exit')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert "Logging error" not in proc.stderr and "FileNotFoundError" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_resume_false_starts_afresh(run_app, tmp_path):
    assert run_app("epochs=2", "hydra.run.dir=r").code == 0
    (tmp_path / "r" / "metrics.json").unlink()  # as if the run had died before finishing
    assert run_app("epochs=3", "resume=false", "hydra.run.dir=r").code == 0
    assert [e["epoch"] for e in read(tmp_path / "r" / "metrics.json")["history"]] == [1, 2, 3]


def test_a_complete_run_is_never_overwritten_by_other_settings(run_app, tmp_path):
    assert run_app("epochs=2", "hydra.run.dir=r").code == 0
    kept = (tmp_path / "r" / "metrics.json").read_bytes()
    result = run_app("epochs=2", "lr=0.5", "hydra.run.dir=r")
    assert result.code == 2
    assert "holds a complete run with other settings (lr=0.1 there, 0.5 now" in result.err
    assert (tmp_path / "r" / "metrics.json").read_bytes() == kept


def test_kill_9_of_a_search_then_the_same_command_completes_the_study(tmp_path):
    search = [
        "hparams_search=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=2", "hydra.sweeper.params.hidden=1500", *SLOW,
    ]  # fmt: skip
    study_dir = tmp_path / "outputs" / "optuna" / "optuna-mnist_5k-val_acc"
    proc = start(*search, cwd=tmp_path, start_new_session=True)
    wait_for_epoch(study_dir / "1" / "metrics.json", 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    first = read(study_dir / "0" / "metrics.json")

    again = start(*search, cwd=tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    # The killed trial's line, as the search finds it stale, comes before the search's end.
    lines = out.splitlines()
    stale = [i for i, line in enumerate(lines) if line.startswith("trial 1 ") and "failed" in line]
    assert len(stale) == 1 and stale[0] < _index(lines, "Best trial: ")
    url = f"sqlite:///{tmp_path}/outputs/optuna/optuna-mnist_5k-val_acc.db"
    trials = optuna.load_study(study_name="optuna-mnist_5k-val_acc", storage=url).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1
    assert trials[0].state.name == "COMPLETE" and trials[0].value == first["objective"]["value"]
    killed = trials[1]
    assert killed.state.name == "FAIL" and "error" not in killed.user_attrs  # went stale
    retried = [t for t in trials[2:] if t.params == killed.params and t.state.name == "COMPLETE"]
    assert len(retried) == 1
    assert read(study_dir / "1" / "metrics.json")["status"] == "failed"


def _index(lines: list[str], start: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(start))


def test_an_output_folder_that_cannot_be_made_is_one_line_and_exit_1(run_script, tmp_path):
    (tmp_path / "taken").write_text("a file where the run folder should go")
    result = run_script("epochs=1", "hydra.run.dir=taken/run")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "error: cannot write the results: taken/run: Not a directory"
    ]


def test_ctrl_c_while_an_epoch_is_saved_keeps_the_record_and_checkpoint_together(
    ctrl_c, tmp_path, monkeypatch
):
    """Ctrl-C pressed while the first epoch's checkpoint is written: the run stops once
    both its checkpoint and its metrics.json hold that epoch, so that the same command
    continues from it (a record of one epoch beside no checkpoint started over)."""
    save = job.checkpoint.save

    def pressed_meanwhile(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # handled at Python's next step, inside the save
        save(*args, **kwargs)

    monkeypatch.setattr(job.checkpoint, "save", pressed_meanwhile)
    assert run_in_process("epochs=3", "hydra.run.dir=r", cwd=tmp_path).code == 130
    stopped = read(tmp_path / "r" / "metrics.json")
    assert stopped["status"] == "interrupted" and stopped["epochs_run"] == 1
    assert (tmp_path / "r" / "checkpoint.pt").is_file()


def test_a_full_disk_fails_the_run_with_one_line_and_keeps_its_record(tmp_path):
    def small_disk() -> None:  # files beyond 200 kB fail to write, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = start("epochs=2", "hydra.run.dir=run", cwd=tmp_path, preexec_fn=small_disk)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1].endswith("run/checkpoint.pt: File too large")
    record = read(tmp_path / "run" / "metrics.json")
    assert record["status"] == "failed" and "File too large" in record["error"]
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no half-written file left behind
