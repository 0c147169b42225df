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
from omegaconf import DictConfig

from mlp_sweep.config import validate


@dataclass
class GridSweeperConf(BasicSweeperConf):
    _target_: str = "mlp_sweep.sweepers.GridSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf)


class GridSweeper(BasicSweeper):
    """Compose and validate all jobs of the grid up front, so one bad value (``lr=0.1,-1``)
    stops the sweep before anything trains or any sweep folder is made.

    The launcher then gets the configs composed here instead of composing each job again
    (Hydra's basic sweeper composes every job twice: to check it, then to launch it).
    """

    def sweep(self, arguments: list[str]) -> Any:
        assert self.hydra_context is not None and self.config is not None
        # Resolve the sweep folder first: jobs composed from the master config copy its
        # resolver cache, so they all land in this folder (its name has a random part).
        str(self.config.hydra.sweep.dir)
        loader = self.hydra_context.config_loader
        parser = OverridesParser.create(config_loader=loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        composed = {}
        for batch in self.split_arguments(overrides, None):
            for job in batch:
                composed[tuple(job)] = cfg = loader.load_sweep_config(self.config, list(job))
                validate(cfg)
        self.hydra_context.config_loader = _Composed(loader, composed)
        try:
            return super().sweep(arguments)
        finally:
            self.hydra_context.config_loader = loader

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing left to check: :meth:`sweep` composed every job already."""


class _Composed:
    """A config loader that hands out each job's config composed already, once; everything
    else goes to the loader it wraps."""

    def __init__(self, loader: Any, configs: dict[tuple[str, ...], DictConfig]) -> None:
        self._loader = loader
        self._configs = configs

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        ready = self._configs.pop(tuple(sweep_overrides), None)
        if ready is not None:
            return ready
        return self._loader.load_sweep_config(master_config, sweep_overrides)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never for our own attributes (pickling looks some up)
            raise AttributeError(name)
        return getattr(self._loader, name)
