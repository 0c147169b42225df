"""Sweeps from a notebook, or any Python code: run one, and read results as DataFrames.

:func:`sweep` runs ``python run.py -m <overrides>`` (as ``python -m mlp_sweep``) in a child
process and returns its table; :func:`load`, :func:`history` and :func:`plot` read any folder
of runs. ``import mlp_sweep`` makes them ``mlp_sweep.sweep`` and so on, importing this module
(pandas) only when one is first used.

Example::

    import mlp_sweep

    table = mlp_sweep.sweep("model=sigmoid_mse,softmax_ce", "hidden=50,100", "epochs=5")
    curves = mlp_sweep.history(table["path"][0]).plot(x="epoch", y="val_acc")
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere

from mlp_sweep import collect, records
from mlp_sweep.config import is_search
from mlp_sweep.console import EVENTS, PARENT
from mlp_sweep.errors import BAD_INPUT, INTERRUPTED, BadInput, SweepFailed

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

FOLLOW_SECONDS = 0.2  # how often the bar looks for the child's events


def sweep(*overrides: str, dir: str | Path | None = None) -> pd.DataFrame:
    """Run the sweep ``python run.py -m *overrides`` runs and return its table, as
    :func:`load` reads it.

    The same command runs, in a child process: the same sweepers, launchers, folders and
    resume rules (``hparams_search=optuna`` runs a search). Its console stays out of the
    way: one progress bar follows the jobs (``tqdm.auto``: a widget in Jupyter), and each
    run's log is in its ``mlp_sweep.log``.

    ``dir`` is the sweep's folder (``hydra.sweep.dir``); running again into it keeps what
    finished and continues what did not. For a search it holds the study's SQLite file too
    (``hydra.sweeper.storage``, unless an override names one), so the folder is the whole
    study, and two folders are two studies. Without ``dir``, the sweep goes where the
    command would put it, under ``outputs/`` in the current folder.

    Bad input raises :class:`~mlp_sweep.errors.BadInput` with the one line the command
    prints after ``error:``, before anything trains; a sweep that fails (a run diverged)
    raises :class:`~mlp_sweep.errors.SweepFailed` with its line, which names the folder to
    :func:`load`. An interrupt (Ctrl-C, or Kernel > Interrupt) stops the sweep as Ctrl-C
    stops the command, finished runs and the summary kept, then raises KeyboardInterrupt
    with the command's last line, which says what it kept.

    Example::

        table = sweep("hidden=50,100,200", "epochs=5", dir="outputs/sweeps/width")
        table[["hidden", "val_acc", "status"]]
    """
    command = [sys.executable, "-m", "mlp_sweep", *_arguments(overrides, dir)]
    with tempfile.TemporaryDirectory(prefix="mlp-sweep-") as tmp:
        events, said = Path(tmp) / "events.jsonl", Path(tmp) / "stderr.txt"
        events.touch()
        with events.open() as reader, said.open("w") as stderr:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # job lines and the table: the result says it all
                stderr=stderr,
                env={**os.environ, EVENTS: str(events), PARENT: str(os.getpid())},
                # An interrupt reaches it once, from here; and it stops by itself once this
                # process is gone (console.stop_with_parent), as a command with its terminal.
                start_new_session=True,
            )
            progress = _Progress(reader)
            try:
                _follow(child, progress)
            except KeyboardInterrupt:
                _interrupt(child, progress)
                told = [line for line in said.read_text().splitlines() if "interrupted;" in line]
                if told:  # what the command kept, as it says it
                    raise KeyboardInterrupt(told[-1]) from None
                raise
            finally:
                if child.poll() is None:  # this process is going down some other way
                    child.kill()
                    child.wait()
                progress.close(keep=child.returncode in (0, INTERRUPTED))
        said_text = said.read_text()
        if dir is not None:  # the folder the caller named dir=, as the caller named it
            said_text = said_text.replace("hydra.sweep.dir=", "dir=")
        return _result(child.returncode, said_text, progress.sweep_dir)


def load(folder: str | Path) -> pd.DataFrame:
    """The runs under ``folder``: one row per run, the columns of ``summary.csv``.

    ``folder`` is anything ``mlp-sweep collect`` takes: a sweep, a search's study folder,
    one run, or a folder above them. The runs are read from their own folders (as the
    summary is), so this also shows a sweep still running or one that was interrupted.

    Example::

        table = load("outputs/sweeps/width")
        table.sort_values("val_acc", ascending=False)[["hidden", "val_acc"]]
    """
    import pandas as pd

    text = collect.summary_table(_collection(folder)).to_csv(index=False)
    # Typed as reading summary.csv types it (whole numbers int64, not object), the names of
    # runs and sweeps kept as text, and every value written back as it was.
    return pd.read_csv(
        io.StringIO(text),
        dtype={"sweep": str, "run": str, "path": str},
        keep_default_na=False,
        na_values=[""],
    )


def history(folder: str | Path) -> pd.DataFrame:
    """Every epoch of every run under ``folder``, long: one row per run and epoch, with the
    run's ``sweep``, ``run`` and swept parameters beside the columns of ``history.csv``.

    Example::

        import seaborn as sns

        sns.relplot(history("outputs/sweeps/width"), x="epoch", y="val_acc", hue="hidden",
                    kind="line")
    """
    import pandas as pd

    c = _collection(folder)
    keys = ["sweep", "run", *c.params]
    frames = [
        epochs.assign(**c.runs.loc[label, keys].to_dict()) for label, epochs in c.histories.items()
    ]
    columns = [*keys, *records.EPOCH_FIELDS]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def plot(folder: str | Path) -> Figure:
    """The figure of ``summary.png`` for the runs under ``folder``, as a matplotlib Figure:
    every run's curves, and the objective against each swept parameter. A notebook shows it
    inline; ``.savefig(path)`` writes it.

    Example::

        plot("outputs/sweeps/width")
    """
    figure = collect.summary_figure(_collection(folder))
    if figure is None:
        raise BadInput(f"no run under {folder} has finished an epoch: there is nothing to draw")
    # IPython shows a Figure by itself only once pyplot has loaded its inline backend; a
    # figure drawn without pyplot (no window, nothing to close) says how it looks as a PNG.
    figure._repr_png_ = functools.partial(_png, figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")  # a notebook keeps it
    return buffer.getvalue()


def _collection(folder: str | Path) -> collect.Collection:
    """The runs under ``folder``, refused as ``mlp-sweep collect`` refuses it: a folder that
    does not exist, or one without runs."""
    if not isinstance(folder, (str, os.PathLike)) or isinstance(os.fspath(folder), bytes):
        raise BadInput(f"folder takes a folder as str or Path; not {folder!r}")
    if not Path(folder).is_dir():
        raise BadInput(f"not a folder: {folder}")
    c = collect.collect([Path(folder)])
    if c.runs.empty:
        raise BadInput(f"no run folders under {folder}")
    return c


def _arguments(overrides: Sequence[str], folder: str | Path | None) -> list[str]:
    """The command line of the sweep: ``-m``, the overrides, and the folder's."""
    for override in overrides:
        if not isinstance(override, str) or override.startswith("-"):
            raise BadInput(
                f"sweep() takes overrides such as 'hidden=50,100', each its own argument; "
                f"not {override!r}"
            )
    arguments = ["-m", *overrides]
    if folder is None:
        return arguments
    if not isinstance(folder, (str, os.PathLike)) or isinstance(os.fspath(folder), bytes):
        raise BadInput(f"dir= takes a folder as str or Path, or None; not {folder!r}")
    if any(o.startswith("hydra.sweep.dir=") for o in overrides):
        raise BadInput("dir= and hydra.sweep.dir= both name the sweep's folder; give one")
    where = _own_folder(folder)
    arguments.append(f"hydra.sweep.dir={_quoted(str(where))}")
    if is_search(overrides) and not any(o.startswith("hydra.sweeper.storage=") for o in overrides):
        # SQLAlchemy reads the path of the URL with %-escapes: a `?` would start its query.
        storage = f"sqlite:///{urllib.parse.quote(str(where))}/${{hydra.sweeper.study_name}}.db"
        arguments.append(f"hydra.sweeper.storage={_quoted(storage)}")
    return arguments


def _own_folder(folder: str | Path) -> Path:
    """``dir`` as an absolute path, refused where it would make a sweep of other runs: no
    folder at all, the current folder or one above it, a folder above other sweeps, or a run's
    own folder (the result would be every run under it, not this sweep's)."""
    where = Path(folder).expanduser().resolve()
    if not str(folder).strip():
        why = "names no folder"
    elif where == Path.cwd() or where in Path.cwd().parents:
        above = "the current folder" if where == Path.cwd() else "above the current folder"
        why = f"is {where}, {above}"
    elif (where / records.METRICS_FILE).exists():
        why = "is a run's folder"
    elif next(where.glob(f"*/*/{records.METRICS_FILE}"), None) is not None:
        why = "holds the runs of other sweeps"
    else:
        return where
    raise BadInput(f"dir={str(folder)!r} {why}; give a folder of its own for the sweep")


def _quoted(value: str) -> str:
    r"""``value`` as one quoted string of Hydra's override grammar, whatever it holds
    (commas, spaces, brackets); an interpolation in it is still resolved.

    >>> _quoted("/tmp/a, b's")
    "'/tmp/a, b\\'s'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Progress:
    """The sweep's progress bar in this process, moved by the events its child writes (see
    :mod:`mlp_sweep.console`)."""

    def __init__(self, reader: IO[str]) -> None:
        self.reader = reader
        self.pending = ""  # a line the child is still writing
        self.sweep_dir: Path | None = None
        self.bar: Any = None

    def update(self) -> None:
        """Take every event written since the last look."""
        while line := self.reader.readline():
            self.pending += line
            if not self.pending.endswith("\n"):
                return
            event, self.pending = json.loads(self.pending), ""
            self._take(event)

    def _take(self, event: dict[str, Any]) -> None:
        if event["event"] == "start":
            self.sweep_dir = Path(event["dir"])
            self.bar = tqdm(
                total=event["total"], initial=event["done"], desc="sweep", unit=event["unit"]
            )
        if event["event"] == "log":  # the command's warnings, which its console would show
            tqdm.write(event["text"], file=sys.stderr)
            return
        if event["best"]:
            self.bar.set_postfix_str(event["best"], refresh=False)
        done = event["event"] == "job" and event["status"] in records.DONE
        room = self.bar.total is None or self.bar.n < self.bar.total
        if done and room:  # a failed run that runs again ends twice: counted once
            self.bar.update(1)

    def close(self, keep: bool) -> None:
        """Take the bar down; ``keep``: leave it showing where the sweep ended."""
        if self.bar is None:
            return
        self.bar.leave = keep
        self.bar.close()
        if keep and getattr(self.bar, "container", None) is not None:  # a Jupyter widget
            # A saved notebook keeps a widget's first text (0/12) only: say where it ended.
            print(self.bar, file=sys.stderr)


def _follow(child: subprocess.Popen[bytes], progress: _Progress) -> None:
    """Move the bar as the child's events come, until it exits."""
    while True:
        try:
            child.wait(FOLLOW_SECONDS)
        except subprocess.TimeoutExpired:
            progress.update()
        else:
            progress.update()
            return


def _interrupt(child: subprocess.Popen[bytes], progress: _Progress) -> None:
    """Pass an interrupt on to the child, as Ctrl-C on a terminal would reach it, and wait
    while it records where it stopped; a second interrupt is passed on too."""
    while True:
        child.send_signal(signal.SIGINT)
        try:
            _follow(child, progress)
            return
        except KeyboardInterrupt:
            continue


def _result(code: int, said: str, sweep_dir: Path | None) -> pd.DataFrame:
    """The sweep's table; or its failure, raised with the line the command printed."""
    lines = [line for line in said.splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if code == 0 and sweep_dir is not None:
        return load(sweep_dir)
    if code == BAD_INPUT and errors:
        raise BadInput(errors[-1])
    if errors:
        raise SweepFailed(errors[-1])
    if code < 0:
        why = f"the sweep was stopped by {signal.Signals(-code).name}"
    elif code == 0:
        why = "the command ran no sweep"
    else:
        why = f"the sweep stopped with exit status {code}: {lines[-1] if lines else 'no message'}"
    failed = SweepFailed(why)
    if said:
        failed.add_note(said)  # a traceback, which the line alone would hide
    raise failed
