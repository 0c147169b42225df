"""Hydra callbacks: collect a sweep's runs into one summary when the sweep ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mlp_sweep import collect, records

log = logging.getLogger(__name__)


class CollectSweep(Callback):
    """Write summary.csv, summary.md and summary.png into the sweep folder and print the table.

    Runs after every multirun, also one that failed or was interrupted, so the summary always
    covers what finished.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        c = collect.write_summary(sweep_dir)  # ranked by the runs' own objective
        if c.runs.empty:
            return
        print(collect.to_markdown(c, f"Sweep {sweep_dir}"), flush=True)
        log.info("summary written to %s", sweep_dir / records.SUMMARY_MD)
