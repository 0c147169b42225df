"""Shared fixtures: the app run in-process or as a subprocess, in a temporary folder."""

from __future__ import annotations

import functools
import io
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from mlp_sweep import app

# Under pytest-xdist the workers share the cores: each worker, and every command it starts,
# trains on one torch thread, so that their threads do not spin waiting for each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tests send Ctrl-C (SIGINT) to the commands they start. Run in the background of a shell
# script, this process has SIGINT ignored and its commands inherit that: handled here, each
# command starts with it at its default, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MLP_SWEEP_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Extracted data sets go to a cache of the test session, not the user's."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def shared_data() -> Path:
    """The read-only folder holding MNIST/raw and FashionMNIST/raw as gzipped IDX files."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"no MNIST files under {SHARED_DATA} (set MLP_SWEEP_SHARED_DATA)")
    return SHARED_DATA


def run_in_process(*args: str, cwd: Path) -> Result:
    """`python run.py *args`, run by this process in ``cwd``: no interpreter start-up, and the
    data sets already loaded by earlier tests are reused, as in one long-lived process."""
    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    sys.argv = ["run.py", *args]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            app.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
        os.chdir(old_cwd)
        sys.argv = old_argv
        _drop_dangling_log_files()
    return Result(code, out.getvalue(), err.getvalue())


def _drop_dangling_log_files() -> None:
    """Remove the log file handler of a refused run, whose folder the app removed: a process
    of its own would have ended there, but this one goes on to log more."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        dangling = not Path(getattr(handler, "baseFilename", ".")).parent.is_dir()
        if isinstance(handler, logging.FileHandler) and dangling:
            root.removeHandler(handler)
            handler.close()


@pytest.fixture
def run_app(tmp_path: Path):
    """Call run.py's main in this process, in tmp_path, as `python run.py *args`."""
    return functools.partial(run_in_process, cwd=tmp_path)


@pytest.fixture
def run_script(tmp_path: Path):
    """Run `python run.py *args` as a subprocess in tmp_path."""

    def call(*args: str, timeout: float = 300) -> Result:
        proc = subprocess.run(
            [sys.executable, str(REPO / "run.py"), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return call


def gone_stale(database: Path, trial: int) -> None:
    """Date the last heartbeat of trial ``trial`` (by number) of the study in the SQLite file
    ``database`` a minute back, long past any grace period: as a kill -9 a while ago leaves
    it, with no wait for the grace period to pass (heartbeats are kept to the second)."""
    db = sqlite3.connect(database)
    with db:  # committed at its end
        db.execute(
            "UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 minute') "
            "WHERE trial_id = (SELECT trial_id FROM trials WHERE number = ?)",
            (trial,),
        )
    db.close()
