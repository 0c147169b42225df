"""Hydra sweepers, registered as Hydra plugins through the `hydra.plugins` entry point.

`grid` is Hydra's basic sweeper checking every job's config before the first job starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser

from mlp_sweep.config import validate


@dataclass
class GridSweeperConf(BasicSweeperConf):
    _target_: str = "mlp_sweep.sweepers.GridSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf)


class GridSweeper(BasicSweeper):
    """Compose and validate all jobs of the grid up front, so one bad value (``lr=0.1,-1``)
    stops the sweep before anything trains or any sweep folder is made."""

    def sweep(self, arguments: list[str]) -> Any:
        assert self.hydra_context is not None and self.config is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        for batch in self.split_arguments(overrides, None):
            for job in batch:
                loader = self.hydra_context.config_loader
                validate(loader.load_sweep_config(self.config, list(job)))
        return super().sweep(arguments)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing left to check: :meth:`sweep` composed every job already."""
