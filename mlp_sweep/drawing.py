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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # for a checkout not installed


class _Drawer:
    """The process drawing figures, fed one JSON line per figure on its stdin."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[str] | None = None
        self.handed = 0  # tasks handed to the process

    def start(self) -> None:
        with self.lock:
            if self.process is not None:
                return
            self.handed = 0
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
                return True
            except (OSError, ValueError):  # it died: the rest are drawn here
                self.process = None
                return False

    def finish(self) -> int:
        """Wait for the process; its exit status (0: every task done, TABLES_FAILED: the last
        summary's tables could not be written; anything else: it died), 0 if there was none."""
        with self.lock:
            process, self.process = self.process, None
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


def title(run_dir: Path, overrides: Sequence[str]) -> str:
    """The title of a run's ``curves.png``: its folder and its overrides."""
    return f"{Path(run_dir).name}: {' '.join(overrides)}"[:120]


def draw_missing(sweep_dir: Path) -> list[Path]:
    """Draw, here, the ``curves.png`` of every run under ``sweep_dir`` that ended with
    epochs in its history but has none: its figure was lost with the process drawing it
    (killed with its sweep, say). Returns the figures drawn; costs a look per run folder."""
    from mlp_sweep import records

    drawn = []
    for metrics in sorted(Path(sweep_dir).glob(f"*/{records.METRICS_FILE}")):
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
            curves(data["history"], path, title(run_dir, data.get("overrides") or []), now=True)
        except (OSError, ValueError) as err:
            log.warning("%s could not be drawn: %s", path, err)
            continue
        drawn.append(path)
    if drawn:
        log.warning("drew %d curves.png lost with the process drawing them", len(drawn))
    return drawn


def summary(sweep_dir: Path, metric: str | Sequence[str] | None = None) -> None:
    """Rewrite a running sweep's summary.csv and summary.md from its runs' records (its
    summary.png waits for the end): in the background during a sweep, else now. A rewrite
    that fails says nothing: the next one, or the sweep's end, does it again, and the end
    says why if it fails too."""
    task = {"summary": str(sweep_dir), "metric": metric, "live": True}
    if not _drawer.send(task):
        _try(task)


def summarise(sweep_dir: Path) -> bool:
    """A sweep's summary at its end (tables and figure), after its runs' figures, by the
    process drawing them; then wait for every task handed over. If that process died before
    it was done, the summary is written here, and the files it was writing are removed. True
    if the tables are written (a figure that cannot be drawn is named, and that is all)."""
    task = {"summary": str(sweep_dir), "metric": None, "live": False}
    if not _drawer.send(task):
        finish()
        return _try(task)
    status = _drawer.finish()
    if status in (0, TABLES_FAILED):
        return status == 0
    # Only that process writes these (the sweep holds its folder).
    for pattern in (".summary.*.tmp", "*/.curves.png.*.tmp"):
        for leftover in Path(sweep_dir).glob(pattern):
            leftover.unlink(missing_ok=True)
    return _try(task)


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
    # The sweep's tasks are read as they come, so that once it has handed over its last one
    # (and waits for them) the tasks left are known, and can be shared with a second core.
    tasks: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    handed_all = threading.Event()
    threading.Thread(target=_read, args=(tasks, handed_all), daemon=True).start()
    written = True
    while (line := tasks.get()) is not None:
        if handed_all.is_set():
            rest = [line]
            while (line := tasks.get()) is not None:
                rest.append(line)
            written = _do_in_two([json.loads(line) for line in rest], written)
            break
        written = _do([json.loads(line)], written)
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
    """:func:`_do` ``tasks`` (the last of a sweep, which waits for them), every other run's
    figure in a fork of this process (on Linux, where forking a process that has imported
    matplotlib is safe): a stacked group's members end together, and hand their figures over
    at once. The summaries stay here, in order."""
    theirs = [task for task in tasks if "curves" in task][1::2]
    child = os.fork() if len(theirs) > 0 and sys.platform == "linux" else None
    if child == 0:
        _do(theirs)
        os._exit(0)
    ours = tasks if child is None else [t for t in tasks if not any(t is x for x in theirs)]
    written = _do(ours, written)
    if child is not None:
        os.waitpid(child, 0)
    return written


def _try(task: dict[str, Any]) -> bool:
    """Do ``task``; one that cannot be done gets a warning, and the sweep goes on. For a
    summary: whether its tables were written."""
    if "summary" in task:
        return _write_summary(task)
    try:
        _draw(task)
        return True
    except Exception as err:
        log.warning("%s could not be drawn: %s", task["path"], err)
        return False


def _write_summary(task: dict[str, Any]) -> bool:
    """The summary's tables, then (at the end of a sweep) its figure, from one collection
    of the runs; whether the tables were written. A live summary's failure says nothing."""
    from mlp_sweep import collect, records

    sweep_dir = Path(task["summary"])
    try:
        c = collect.collect([sweep_dir], task["metric"], histories=not task["live"])
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


def _draw(task: dict[str, Any]) -> None:
    """Draw the ``curves.png`` that ``task`` describes."""
    from mlp_sweep.plots import plot_curves

    plot_curves(task["curves"], Path(task["path"]), title=task["title"])
