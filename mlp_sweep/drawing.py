"""Figures and summaries written off a sweep's critical path.

Drawing a run's ``curves.png`` costs about as much as a short run's epoch, and importing
matplotlib costs more; a sweep of many short runs would spend a third of its time on them.
The sweep's summary (its tables, read from every run so far) needs pandas, and is rewritten
as the sweep goes. So while a sweep runs (from :func:`start` to :func:`finish`, both called
by the sweep's callback), its runs hand their figures and summaries to one process of their
own, started with the sweep, which imports matplotlib and pandas while the first runs train
and does each task while the next runs train; the sweep itself imports neither. The summary
at the end of the sweep is written there too, after the runs' figures (:func:`summarise`,
which writes it in the sweep's own process if that one could not). :func:`finish` waits for
every task, so every file is there when the sweep ends. The process runs in a session of its
own: Ctrl-C, or a kill of the sweep, leaves it to finish what it was handed, then exit.

A search's study figures (Optuna's plots, :func:`study_figures`) are drawn there too, from the
study's database, once the search ends; the process imports their plotting code (which imports
scikit-learn, for the parameter importances) while the trials train.

Outside a sweep, in jobs that a launcher runs in other processes, and in a process that has
imported matplotlib already, figures and summaries are made where they are asked for.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlp_sweep.errors import one_line

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
_serving = False  # this process is the one drawing a sweep's figures (:func:`serve`)
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # for a checkout not installed


class _Drawer:
    """The process drawing figures, fed one JSON line per figure on its stdin."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[str] | None = None
        self.handed = 0  # tasks handed to the process
        self.studies: list[dict[str, Any]] = []  # its study figures: redrawn here if it dies
        self.started: float | None = None  # when it started (its clock: time.time)
        self.died = False  # found dead as a task was handed over

    def start(self) -> None:
        with self.lock:
            if self.process is not None:
                return
            self.handed = 0
            self.studies = []
            self.started, self.died = time.time(), False
            # -P: the working folder is not put first on the path, where a checkout of
            # another version would be imported instead of this one
            code = "from mlp_sweep import drawing; drawing.serve()"
            command = [sys.executable, "-P", "-c", code]
            path = os.pathsep.join(filter(None, (_PACKAGE_ROOT, os.environ.get("PYTHONPATH"))))
            env = {**os.environ, "PYTHONPATH": path}
            try:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,  # its warnings go to stderr
                    text=True,
                    env=env,
                    start_new_session=True,
                )
            except OSError as err:  # figures are then drawn in this process
                log.warning("figures are drawn in this process: %s", err)

    def send(self, task: dict[str, Any]) -> bool:
        """Hand ``task`` to the process; False if there is none to take it."""
        with self.lock:
            if self.process is None or self.process.stdin is None:
                return False
            try:
                self.process.stdin.write(json.dumps(task) + "\n")
                self.process.stdin.flush()
                self.handed += 1
                if "study" in task:
                    self.studies.append(task)
                return True
            except (OSError, ValueError):  # it died: the rest are drawn here
                self.process = None
                self.died = True
                return False

    def finish(self) -> int:
        """Wait for the process; its exit status (0: every task done, TABLES_FAILED: the last
        summary's tables could not be written; anything else: it died), 0 if there was none."""
        with self.lock:
            process, self.process = self.process, None
            self.started = None
        if process is None:
            return 0
        if not self.handed:  # a sweep refused, or one that finished no run: nothing to wait for
            process.kill()
        try:
            assert process.stdin is not None
            process.stdin.close()
        except OSError:
            pass
        status = process.wait()
        return status if self.handed else 0


_drawer = _Drawer()


def start() -> None:
    """Start the process that writes this sweep's figures and summaries, unless this process
    has imported matplotlib already (a long-lived one, such as a test session): it then
    writes them itself, at a few hundredths of a second each, rather than start one more
    interpreter."""
    if "matplotlib" not in sys.modules:
        _drawer.start()


def finish() -> None:
    """Wait until every task handed over is done; from now on they are done here."""
    _drawer.finish()


def curves(history: Sequence[Mapping[str, Any]], path: Path, title: str, now: bool = False) -> None:
    """Draw a run's ``curves.png`` from its per-epoch records: in the background during a
    sweep, else (or if ``now``) here."""
    columns = {key: [epoch.get(key) for epoch in history] for key in history[0]}
    task = {"curves": columns, "path": str(path), "title": title}
    if now or not _drawer.send(task):
        _draw(task)


def title(run_dir: Path, overrides: Sequence[str], sweep_dir: Path | None = None) -> str:
    """The title of a run's ``curves.png``: its folder (below ``sweep_dir``, where a nested
    ``hydra.sweep.subdir`` puts it: ``softmax_ce/h10``) and its overrides, in at most two
    lines as wide as the figure (its ``.hydra/overrides.yaml`` holds them all)."""
    import textwrap

    run_dir = Path(run_dir)
    below = sweep_dir is not None and run_dir.is_relative_to(sweep_dir)
    name = run_dir.relative_to(sweep_dir).as_posix() if below else run_dir.name
    text = f"{name}: {' '.join(overrides)}"
    return textwrap.fill(text, width=TITLE_WIDTH, max_lines=2, placeholder=" ...")


TITLE_WIDTH = 95  # characters of a line of a curves.png title


def draw_missing(sweep_dir: Path) -> list[Path]:
    """Draw, here, the ``curves.png`` of every run under ``sweep_dir`` (at any depth, as
    ``hydra.sweep.subdir`` may nest them) that ended with epochs in its history but has
    none: the run was stopped before it was drawn (a trial whose sweep was killed), or its
    figure was lost with the process drawing it. Returns the figures drawn; costs a look per
    run folder."""
    from mlp_sweep import records

    drawn = []
    for metrics in sorted(Path(sweep_dir).rglob(records.METRICS_FILE)):
        run_dir = metrics.parent
        if (run_dir / records.CURVES_FILE).exists():
            continue
        try:
            data = records.read_metrics(run_dir)
        except ValueError:
            continue  # not a run this can read: collect reports it
        if data["status"] == records.RUNNING or not data["history"]:
            continue
        path = run_dir / records.CURVES_FILE
        try:
            named = title(run_dir, data.get("overrides") or [], Path(sweep_dir))
            curves(data["history"], path, named, now=True)
        except (OSError, ValueError) as err:
            log.warning("%s could not be drawn: %s", path, err)
            continue
        drawn.append(path)
    if drawn:
        log.warning(
            "drew %d missing curves.png (a run, or the process drawing its figure, was "
            "stopped before it was drawn)",
            len(drawn),
        )
    return drawn


def summary(sweep_dir: Path, metric: str | Sequence[str] | None = None) -> None:
    """Rewrite a running sweep's summary.csv and summary.md from its runs' records (its
    summary.png waits for the end): in the background during a sweep, else now. A rewrite
    that fails says nothing: the next one, or the sweep's end, does it again, and the end
    says why if it fails too."""
    task = {"summary": str(sweep_dir), "metric": metric, "live": True}
    if not _drawer.send(task):
        _try(task)


def expect_study(storage: str | None) -> None:
    """A search has begun: if its study's figures will be drawn in the background (its
    ``storage`` is a database that process can open), that process imports their plotting
    code now, while the trials train, rather than once the search has ended."""
    from mlp_sweep.study import opens_elsewhere

    if opens_elsewhere(storage):
        _drawer.send({"warm": "study"})


def study_figures(
    study: optuna.Study, storage: str | None, folder: Path, objectives: Sequence[str]
) -> None:
    """The figures of a search's ``study`` (:func:`plots.plot_study`) in ``folder``: in the
    background during a sweep if that process can open the study's ``storage`` (a SQL
    database), else here. :func:`summarise` waits for them."""
    from mlp_sweep.study import opens_elsewhere

    task = {
        "study": study.study_name,
        "storage": storage,
        "folder": str(folder),
        "objectives": list(objectives),
    }
    if not (opens_elsewhere(storage) and _drawer.send(task)):
        from mlp_sweep.plots import plot_study

        plot_study(study, folder, objectives)


def summarise(sweep_dir: Path) -> bool:
    """A sweep's summary at its end (tables and figure), after its runs' figures, by the
    process drawing them; then wait for every task handed over. If that process died before
    it was done, the summary is written here, and the files it was writing are removed. True
    if the tables are written (a figure that cannot be drawn is named, and that is all)."""
    task = {"summary": str(sweep_dir), "metric": None, "live": False}
    started = _drawer.started
    if not _drawer.send(task):
        died = _drawer.died
        finish()
        if died or started is not None:
            _remove_leftovers(sweep_dir, None if died else started)
        return _try(task)
    studies = _drawer.studies
    status = _drawer.finish()
    if status in (0, TABLES_FAILED):
        if started is not None:
            _remove_leftovers(sweep_dir, started)  # an earlier session's
        return status == 0
    _remove_leftovers(sweep_dir)
    for study in studies:
        _try(study)
    return _try(task)


def _remove_leftovers(sweep_dir: Path, before: float | None = None) -> None:
    """Remove the files that a process drawing this sweep's figures left half-written, as
    it died: every one, or those written before ``before`` (a ``time.time()``: an earlier
    session's). Only that process writes them, and the sweep holds its folder."""
    for pattern in (".summary.*.tmp", "**/.curves.png.*.tmp", ".optuna_*.png.*.tmp"):
        for leftover in Path(sweep_dir).glob(pattern):
            try:
                if before is None or leftover.stat().st_mtime < before:
                    leftover.unlink()
            except FileNotFoundError:
                pass


# The figures' process's exit status when the last summary's tables could not be written.
TABLES_FAILED = 2


def serve(lines: Iterable[str] | None = None) -> bool:
    """Do each task described by a line of ``lines`` (stdin by default), in order; a task
    that cannot be done gets a warning. True if the last summary's tables were written (or
    there was none); on stdin, that is the process's exit status (0, or TABLES_FAILED)."""
    # matplotlib, and pandas for the summaries, imported while the first runs train
    from mlp_sweep import collect, plots  # noqa: F401

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    if lines is not None:
        return _do([json.loads(line) for line in lines])
    global _serving
    _serving = True
    # The sweep's tasks are read as they come, so that once it has handed over its last one
    # (and waits for them) the tasks left are known, and can be shared with a second core.
    tasks: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    handed_all = threading.Event()
    threading.Thread(target=_read, args=(tasks, handed_all), daemon=True).start()
    written = True
    forks: list[tuple[int, list[dict[str, Any]]]] = []  # a study's figures, drawn meanwhile
    while (line := tasks.get()) is not None:
        if handed_all.is_set():
            rest = [line]
            while (line := tasks.get()) is not None:
                rest.append(line)
            written = _do_in_two([json.loads(line) for line in rest], written)
            break
        task = json.loads(line)
        if "study" in task and (child := _fork()) is not None:
            if child == 0:
                _do([task])
                os._exit(0)
            forks.append((child, [task]))
            continue
        written = _do([task], written)
    for child, theirs in forks:
        _wait(child, theirs)
    gc.freeze()  # the process ends here, and the sweep waits for it (see app.run)
    sys.exit(0 if written else TABLES_FAILED)


def _do(tasks: list[dict[str, Any]], written: bool = True) -> bool:
    """Do ``tasks`` in order; whether the last summary among them (else ``written``) was."""
    for task in tasks:
        done = _try(task)
        if "summary" in task:
            written = done
    return written


def _read(tasks: queue.SimpleQueue[str | None], handed_all: threading.Event) -> None:
    for line in sys.stdin:
        tasks.put(line)
    tasks.put(None)
    handed_all.set()


def _do_in_two(tasks: list[dict[str, Any]], written: bool) -> bool:
    """:func:`_do` ``tasks`` (the last of a sweep, which waits for them), a study's figures
    and every other run's figure in a fork of this process (:func:`_fork`): a stacked group's
    members end together, and hand their figures over at once. The summaries stay here, in
    order."""
    studies = [task for task in tasks if "study" in task]
    theirs = studies + [task for task in tasks if "curves" in task][len(studies) :: 2]
    child = _fork() if theirs else None
    if child == 0:
        _do(theirs)
        os._exit(0)
    ours = tasks if child is None else [t for t in tasks if not any(t is x for x in theirs)]
    written = _do(ours, written)
    if child is not None:
        _wait(child, theirs)
    return written


def _wait(child: int, tasks: list[dict[str, Any]]) -> None:
    """Wait for the fork ``child`` doing ``tasks``; if it did not end well (killed, say), do
    them here, over what it left half-written."""
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return
    for task in tasks:
        if "study" in task:
            leftovers = Path(task["folder"]).glob(".optuna_*.png.*.tmp")
        else:
            leftovers = Path(task["path"]).parent.glob(f".{Path(task['path']).name}.*.tmp")
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
    _do(tasks)


def _fork() -> int | None:
    """``os.fork()`` on Linux, where forking a process that has imported matplotlib is safe;
    None elsewhere (the caller then does the work itself)."""
    return os.fork() if sys.platform == "linux" else None


def _try(task: dict[str, Any]) -> bool:
    """Do ``task``; one that cannot be done gets a warning, and the sweep goes on. For a
    summary: whether its tables were written."""
    if "summary" in task:
        return _write_summary(task)
    if "warm" in task:
        _warm()
        return True
    try:
        if "study" in task:
            _draw_study(task)
        else:
            _draw(task)
        return True
    except Exception as err:
        what = f"the figures of study {task['study']}" if "study" in task else task["path"]
        log.warning("%s could not be drawn: %s", what, one_line(err))
        return False


def _write_summary(task: dict[str, Any]) -> bool:
    """The summary's tables, then (at the end of a sweep) its figure, from one collection
    of the runs; whether the tables were written. A live summary's failure says nothing."""
    from mlp_sweep import collect, records

    sweep_dir = Path(task["summary"])
    try:
        c = collect.collect([sweep_dir], task["metric"], histories=not task["live"])
        if task["live"] and c.runs.empty:
            return False  # no run folder yet (the sweep's end says so if none comes)
        if not collect.write_tables(c, sweep_dir):
            return False  # no runs: nothing written (its warning says so)
    except Exception as err:
        if not task["live"]:
            log.warning("the summary of %s could not be written: %s", sweep_dir, err)
        return False
    if not task["live"]:
        png = sweep_dir / records.SUMMARY_PNG
        try:
            collect.write_plot(c, png)
        except Exception as err:
            log.warning("%s could not be drawn: %s", png, err)
    return True


def _warm() -> None:
    """Import what drawing a study's figures needs."""
    import optuna.importance
    import optuna.visualization.matplotlib  # noqa: F401

    from mlp_sweep import study  # noqa: F401


def _draw_study(task: dict[str, Any]) -> None:
    """Draw the study figures that ``task`` describes, from the study's database."""
    import optuna

    from mlp_sweep.plots import plot_study
    from mlp_sweep.study import open_rdb

    if _serving:  # Optuna's notes on figures it cannot make repeat the search's own
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()  # its errors: as this process's warnings
    study = optuna.load_study(study_name=task["study"], storage=open_rdb(task["storage"]))
    plot_study(study, Path(task["folder"]), task["objectives"])


def _draw(task: dict[str, Any]) -> None:
    """Draw the ``curves.png`` that ``task`` describes."""
    from mlp_sweep.plots import plot_curves

    plot_curves(task["curves"], Path(task["path"]), title=task["title"])
