"""What a sweep shows on the console: one line per finished job and one progress bar.

A single run prints a line per epoch. In a sweep (``-m``, or a search) each job logs its
epochs to its own log file only; the console gets one line per finished job (number, swept
values, objective, status, seconds) and, on a terminal, a progress bar for the whole sweep
(jobs done of planned, best so far, time left). ``console=epochs`` or ``hydra.verbose=true``
brings the per-epoch lines of a sweep's jobs back.

:class:`SweepWatch` lives in the process that runs the sweeper. It learns that a job ended
from Hydra's ``on_job_end`` callback when the job runs in that process (the basic launcher),
and by looking at the sweep folder every second when jobs run elsewhere (joblib, submitit,
Ray). Each time it also rewrites the sweep's summary.csv and summary.md, so
``mlp-sweep compare`` on a running sweep shows what is done. Where ``$MLP_SWEEP_EVENTS``
names a file, it also appends one JSON line there per event of the bar (the sweep starts,
a job ends), for a program that runs the sweep and draws its own bar
(:func:`mlp_sweep.notebook.sweep`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from mlp_sweep import drawing, objectives, records
from mlp_sweep.errors import one_line

LIVE_SUMMARY_SECONDS = 5.0  # the live summary is rewritten at most this often
POLL_SECONDS = 1.0  # how often the sweep folder is looked at when jobs run in other processes
_FINAL = {records.COMPLETE, records.FAILED, records.PRUNED, records.INTERRUPTED}
EVENTS = "MLP_SWEEP_EVENTS"  # the environment variable naming the sweep's event file
PARENT = "MLP_SWEEP_PARENT"  # the environment variable naming the pid the sweep stops with
PARENT_SECONDS = 0.5  # how often the sweep looks whether that process is still there
_active: SweepWatch | None = None  # the console of this process's sweep, while it runs


class ConsoleHandler(logging.StreamHandler):
    """A console log handler that prints above a progress bar instead of through it. A
    record about one run (``extra={"run_dir": ...}``) whose line the sweep has printed
    already (a trial's failure, as the search logs it) is not printed again."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            run_dir = getattr(record, "run_dir", None)
            if run_dir is None or not said(Path(run_dir)):
                tqdm.write(self.format(record), file=self.stream)
            if record.levelno >= logging.WARNING:  # for a program that hides the console
                text = f"{record.levelname.lower()}: {one_line(Exception(record.getMessage()))}"
                _event("log", text=text)
        except Exception:
            self.handleError(record)


def shows_epochs(cfg: DictConfig, hydra_cfg: DictConfig) -> bool:
    """Whether this job shows its epochs on the console: in a single run, with
    ``console=epochs``, or with ``hydra.verbose``."""
    return hydra_cfg.mode != RunMode.MULTIRUN or cfg.get("console") == "epochs" or hydra_cfg.verbose


def show_epochs(cfg: DictConfig, hydra_cfg: DictConfig) -> bool:
    """:func:`shows_epochs`; if not, the job's console log handlers are set to warnings only,
    so its epoch lines go to its log file alone (Hydra builds the handlers anew for every
    job, so this lasts one job)."""
    if shows_epochs(cfg, hydra_cfg):
        return True
    quiet()
    return False


def quiet() -> None:
    """Set the console's log handlers to warnings only, until logging is configured anew."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.WARNING)


def planned(config: DictConfig) -> tuple[int | None, list[str]]:
    """How many jobs a sweep will run and which keys it sweeps, from its master config: a
    search's ``n_trials`` and space, or the grid of the command-line sweeps."""
    sweeper = config.hydra.sweeper
    parser = OverridesParser.create()
    params = _as_written(sweeper.get("params") or {})
    # Each key once, the last value winning in the first one's place, as Hydra's sweepers
    # take them: the command line's `lr=...` replaces the config's `params.lr`.
    final: dict[str, Override] = {}
    for override in parser.parse_overrides(
        [*(f"{k}={v}" for k, v in params.items()), *_as_written(config.hydra.overrides.task)]
    ):
        final[override.get_key_element()] = override
    swept = [key for key, o in final.items() if o.is_sweep_override()]
    if "n_trials" in sweeper:
        return sweeper.n_trials, swept
    total = 1
    for override in final.values():
        if override.is_sweep_override():
            try:
                total *= len(list(override.sweep_string_iterator()))
            except HydraException:  # glob(): a group's options, which only the sweeper lists
                return None, swept  # the bar counts the jobs done, of a total it does not know
    return total, swept


def _as_written(node: Any) -> Any:
    """Overrides as the command line wrote them: ``batch_size=${hidden.0}`` is an
    interpolation that only each job's config can resolve, not the sweep's master config."""
    return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node


def said(run_dir: Path) -> bool:
    """Whether the console of this process's sweep has printed the line of the run in
    ``run_dir``, or will: its metrics.json holds how it ended, which the next look at the
    sweep folder prints (jobs in other processes)."""
    watch = _active
    if watch is None:
        return False
    if run_dir.resolve() in watch.said:
        return True
    try:
        return records.read_metrics(run_dir)["status"] in _FINAL
    except ValueError:
        return False


class SweepWatch:
    """The console of one sweep, and its live summary; see the module docstring."""

    def __init__(self, sweep_dir: Path, config: DictConfig) -> None:
        global _active
        self.sweep_dir = sweep_dir.resolve()  # jobs name their folders by absolute paths
        metrics = objectives.names(config.get("objective") or "val_acc")
        # With several objectives no run is best: the summary marks the Pareto front.
        self.objective = metrics if len(metrics) > 1 else metrics[0]
        self.maximize = records.direction(metrics[0]) == "maximize"
        total, self.swept = planned(config)
        search = str(config.hydra.sweeper.get("_target_", "")).endswith("SearchSweeper")
        self.unit = "trial" if search else "job"  # a search's folders are named by trial
        # Keys every job shares from the command line, which a job's line need not repeat.
        self.fixed = [
            o.get_key_element()
            for o in OverridesParser.create().parse_overrides(
                _as_written(config.hydra.overrides.task)
            )
            if not o.is_sweep_override()
        ]
        self.lock = threading.Lock()
        self._written = -math.inf  # when the live summary was last rewritten
        # Runs finished before this session started (a resumed sweep) are not reported
        # again unless they finish again (a failed job that runs anew).
        self.seen: dict[Path, Any] = {}
        self.said: set[Path] = set()  # the runs this session printed a line for
        self.best: tuple[float, str] | None = None
        done = 0  # an interrupted run counts once it is done
        for run_dir, data in self._finished_runs():
            self.seen[run_dir] = data.get("finished_at")
            self._update_best(run_dir, data)
            done += data["status"] in records.DONE
        done = min(done, total) if total else done
        self.bar = tqdm(total=total, initial=done, desc="sweep", unit=self.unit, disable=None)
        self._show_best()
        _event(
            "start",
            dir=str(self.sweep_dir),
            total=total,
            done=done,
            unit=self.unit,
            best=self._best(),
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if not launcher.endswith(("BasicLauncher", "StackedLauncher")):  # jobs elsewhere
            self._thread = threading.Thread(target=self._poll, name="sweep-watch", daemon=True)
            self._thread.start()
        _active = self

    def job_ended(self, run_dir: Path, error: BaseException | None) -> None:
        """A job of this process ended: report it from its own metrics.json (reading only
        that one keeps a long sweep's console cheap), or from its error if it wrote none."""
        run_dir = run_dir.resolve()
        with self.lock:
            try:
                data = records.read_metrics(run_dir)
            except ValueError:
                data = None
            if data is not None and data["status"] in _FINAL:
                if self.seen.get(run_dir, object()) != data.get("finished_at"):
                    self._report(run_dir, data)
            elif isinstance(error, KeyboardInterrupt):  # stopped before its first record
                self._line(run_dir, f"{self.unit} {run_dir.name}  interrupted")
                self._count(run_dir, records.INTERRUPTED)
            elif error is not None:
                self._line(run_dir, f"{self.unit} {run_dir.name}  failed: {one_line(error)}")
                self._count(run_dir, records.FAILED)
            self._show_best()
            self._write_summary()

    def close(self, report: bool = True) -> None:
        """Report what finished since the last look (if ``report``), and take the bar down."""
        global _active
        if _active is self:
            _active = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if report:
            with self.lock:
                self._report_new()
        else:  # a sweep refused before it ran: its error line is all it leaves on the screen
            self.bar.leave = False
        self.bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            with self.lock:
                self._report_new()

    def _report_new(self) -> set[Path]:
        """Print a line for each run that finished since the last look; rewrite the
        summary if any did. Returns their folders."""
        new = set()
        for run_dir, data in self._finished_runs():
            if self.seen.get(run_dir, object()) == data.get("finished_at"):
                continue
            new.add(run_dir)
            self._report(run_dir, data)
        if new:
            self._show_best()
            self._write_summary()
        return new

    def _report(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.seen[run_dir] = data.get("finished_at")
        self._update_best(run_dir, data)
        self._line(run_dir, job_line(run_dir, data, self.swept, self.fixed))
        self._count(run_dir, data["status"])

    def _count(self, run_dir: Path, status: str) -> None:
        """One more job done (not one interrupted), on the bar and in the event file."""
        if status in records.DONE and (self.bar.total is None or self.bar.n < self.bar.total):
            self.bar.update(1)
        _event("job", run=str(run_dir), status=status, best=self._best())

    def _finished_runs(self) -> list[tuple[Path, dict[str, Any]]]:
        found = []
        for path in sorted(self.sweep_dir.glob(f"*/{records.METRICS_FILE}")):
            try:
                data = records.read_metrics(path.parent)
            except ValueError:
                continue  # a run being written for the first time; seen on the next look
            if data["status"] in _FINAL:
                found.append((path.parent, data))
        return found

    def _update_best(self, run_dir: Path, data: dict[str, Any]) -> None:
        value = (data.get("objective") or {}).get("value")
        if data["status"] != records.COMPLETE or not isinstance(value, (int, float)):
            return
        if not math.isfinite(value):
            return
        if self.best is None or (value > self.best[0]) == self.maximize:
            trial = data.get("trial")
            self.best = (value, f"trial {trial['number']}" if trial else f"job {run_dir.name}")

    def _best(self) -> str | None:
        """The best run so far, as the bar shows it: ``best val_acc 0.8125 (job 1)``."""
        if self.best is None:
            return None
        value, run = self.best
        return f"best {self.objective} {value:.4f} ({run})"

    def _show_best(self) -> None:
        best = self._best()
        if best is not None:
            self.bar.set_postfix_str(best)

    def _line(self, run_dir: Path, text: str) -> None:
        self.bar.write(text, file=sys.stdout)
        self.said.add(run_dir)

    def _write_summary(self) -> None:
        # Jobs still running are in it too; the png waits for the end of the sweep, as
        # drawing it costs more than the tables. Collecting reads every run so far, so in a
        # sweep of many short jobs it is done at most every LIVE_SUMMARY_SECONDS (in the
        # process drawing the figures, which has pandas); the end of the sweep writes it whole.
        now = time.monotonic()
        if now - self._written < LIVE_SUMMARY_SECONDS:
            return
        self._written = now
        drawing.summary(self.sweep_dir, self.objective)


def _event(event: str, **fields: Any) -> None:
    """Append one event as a JSON line to the file ``$MLP_SWEEP_EVENTS`` names, if it names
    one. A line is written whole by one call, so a reader that takes complete lines only
    never reads half of one."""
    path = os.environ.get(EVENTS)
    if path:
        with open(path, "a") as file:
            file.write(json.dumps({"event": event, **fields}) + "\n")


def stop_with_parent() -> None:
    """Where ``$MLP_SWEEP_PARENT`` names this process's parent, interrupt this process as
    Ctrl-C does once that parent is gone (killed, or its kernel restarted), as a command
    stops with its terminal: the runs in progress end ``interrupted`` and the summary is
    written, instead of a sweep training on that nobody sees. Called first in the process."""
    named = os.environ.get(PARENT)
    if not named or int(named) != os.getppid():
        return

    def watch() -> None:
        while os.getppid() == int(named):
            time.sleep(PARENT_SECONDS)
        signal.raise_signal(signal.SIGINT)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def say(text: str) -> None:
    """Print ``text`` on stdout above a sweep's progress bar, if one is drawn, rather than
    into the bar's line."""
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def job_line(
    run_dir: Path, data: dict[str, Any], swept: Sequence[str] = (), fixed: Sequence[str] = ()
) -> str:
    """One finished run in one line: number, swept values (or, where a search's space says
    what it drew only in each job's overrides, those not ``fixed`` for every job), objective,
    status, seconds.

    >>> job_line(Path("3"), {"overrides": ["hidden=40", "epochs=2"], "status": "complete",
    ...     "objective": {"metric": "val_acc", "value": 0.8125}, "seconds": {"total": 1.23}},
    ...     swept=["hidden"])
    'job 3  hidden=40  val_acc 0.8125  complete  1.2s'
    """
    overrides = dict(o.split("=", 1) for o in data.get("overrides", []) if "=" in o)
    overrides.pop("trial", None)
    keys = [k for k in swept if k in overrides] or [k for k in overrides if k not in fixed]
    values = " ".join(f"{k}={_short(overrides[k])}" for k in keys)
    trial = data.get("trial")
    name = f"trial {trial['number']}" if trial else f"job {run_dir.name}"
    objective = data.get("objective") or {}
    value = objective.get("value")
    shown = objectives.show(objective.get("metric"), value) if value is not None else ""
    seconds = (data.get("seconds") or {}).get("total") or 0.0
    status = data["status"]
    if status == records.FAILED and data.get("error"):
        status = f"failed: {data['error'][:120]}"
    return "  ".join(part for part in (name, values, shown, status, f"{seconds:.1f}s") if part)


def _short(text: str) -> str:
    if text in ("True", "False"):  # as Hydra's grid writes a flag: as a config writes it
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return text if number.is_integer() or len(text) <= 6 else f"{number:.4g}"
