"""Hydra callbacks: watch a sweep as its jobs finish, and collect its runs when it ends."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from mlp_sweep import drawing, records
from mlp_sweep.config import check_objective
from mlp_sweep.console import SweepWatch
from mlp_sweep.errors import BadInput, ConfigError
from mlp_sweep.sweepers import failure

log = logging.getLogger(__name__)
# The watch of the sweep this process runs. Kept here, not on the callback: launchers that
# run jobs in other processes pickle the callbacks, and a watch holds a thread and a lock.
_watch: SweepWatch | None = None
# The folder of the sweep this process ran: where an interrupted command looks for what it kept.
swept: Path | None = None


def ended_elsewhere(run_dir: Path) -> None:
    """Show a run that ended without a job of this process, as it ends: a stale trial,
    marked failed by the search (otherwise shown only once the sweep ends)."""
    if _watch is not None:
        _watch.job_ended(run_dir, None)


class CollectSweep(Callback):
    """Show each finished job and rewrite the summary as a sweep goes; when it ends, write
    summary.csv, summary.md and summary.png into the sweep folder and print the table.

    The end runs after every multirun, also one that failed or was interrupted, so the
    summary always covers what finished; but not after one that was refused for bad input
    before it started (its one ``error:`` line says why), which changes no file.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _watch, swept
        _watch = swept = None
        try:
            swept = Path(config.hydra.sweep.dir)
            check_objective(config)  # the watch ranks the runs by it
        except (ConfigError, OmegaConfBaseException):  # the sweeper refuses the sweep, in one
            return  # line of its own
        _watch = SweepWatch(Path(config.hydra.sweep.dir), config)
        drawing.start()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if _watch is None:  # a job in a process of its own: the sweeper's process watches
            return
        _watch.job_ended(Path(config.hydra.runtime.output_dir), failure(job_return))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _watch
        # Hydra calls this from a `finally:`, so the error that ends the sweep is in flight:
        # a sweep refused for bad input ran nothing, and reports and rewrites nothing (its
        # folder may be another sweep's, in use).
        refused = isinstance(sys.exc_info()[1], BadInput)
        if _watch is not None:
            _watch.close(report=not refused)
            _watch = None
        if swept is None:  # a sweep folder that cannot be resolved: refused by the sweeper
            drawing.finish()
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        table = sweep_dir / records.SUMMARY_MD
        if not sweep_dir.is_dir() or refused:
            drawing.finish()
        elif drawing.summarise(sweep_dir) and table.exists():  # every file is there now
            print(table.read_text(), flush=True)
            log.info("summary written to %s", table)
        if sweep_dir.is_dir() and not refused:  # a figure lost with its process is drawn here
            drawing.draw_missing(sweep_dir)
