"""``hydra/launcher=stacked``: the jobs a sweeper hands over, trained together in stacked
groups inside this process (registered through the ``hydra.plugins`` entry point).

The launcher composes each job as Hydra's basic launcher does (its number, its folder, its
Hydra config), prepares it with :func:`mlp_sweep.job.prepare`, groups the jobs that can share
one pass (:func:`mlp_sweep.group.partition`), at most ``max_members`` to a group, and hands
each group to :func:`mlp_sweep.group.run_group`; a job whose settings are not known to train
stacked (:func:`mlp_sweep.group.solo_reason`) is trained alone by :func:`mlp_sweep.group.run_solo`,
with one line saying why. It returns one JobReturn per job, in order.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from mlp_sweep.errors import ConfigError
from mlp_sweep.launchers import use_threads

if TYPE_CHECKING:
    from mlp_sweep import group

log = logging.getLogger(__name__)
_LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


@dataclass
class StackedLauncherConf:
    _target_: str = "mlp_sweep.stacked_launcher.StackedLauncher"
    max_members: int = 16  # jobs trained in one stack at most
    # A group's padded weights (every member as wide as its widest) at most this x its own.
    max_padding: float = 1.5


ConfigStore.instance().store(group="hydra/launcher", name="stacked", node=StackedLauncherConf)


class StackedLauncher(Launcher):
    """Train the jobs of each launch in stacked groups, in this process, on every core."""

    def __init__(self, max_members: int, max_padding: float = 1.5) -> None:
        if not isinstance(max_members, int) or max_members < 1:
            raise ConfigError(
                f"hydra.launcher.max_members={max_members!r} is invalid: must be a whole "
                "number of at least 1"
            )
        if isinstance(max_padding, bool) or not (
            isinstance(max_padding, (int, float)) and max_padding >= 1
        ):
            raise ConfigError(
                f"hydra.launcher.max_padding={max_padding!r} is invalid: must be a number of "
                "at least 1 (1: only members of the same widths share a pass)"
            )
        self.max_members = max_members
        self.max_padding = float(max_padding)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        # Imported here: Hydra imports every plugin at start-up, --help included.
        from mlp_sweep import console, group, job

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        self._hydra_logging()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs stacked", len(job_overrides))
        jobs = [self._compose(initial_job_idx + i, o) for i, o in enumerate(job_overrides)]
        outcomes: dict[int, group.Outcome] = {}
        lives: dict[int, job.Life] = {}
        for i, (config, ret) in enumerate(jobs):
            # Its own Hydra config while it is checked, as for the group's work on it later
            # (group.as_job): ${hydra:...} in its config resolves to its values.
            HydraConfig.instance().cfg = ret.hydra_cfg
            self.hydra_context.callbacks.on_job_start(
                config=config, task_function=self.task_function
            )
            try:
                life = job.prepare(ret.cfg, config.hydra, full_cfg=ret.hydra_cfg)
                if life.settled:
                    outcomes[i] = job.settle(life)
                else:
                    lives[i] = life
            except Exception as err:
                outcomes[i] = err
        cfgs = {i: life.cfg for i, life in lives.items()}
        groups = group.partition(cfgs, self.max_members, self.max_padding)
        solo = {i: why for i, life in lives.items() if (why := group.solo_reason(life.cfg))}
        for i, why in solo.items():
            log.info("job %s trains solo: %s", lives[i].hydra_cfg.job.num, why)
        try:
            console.quiet()  # each run's own lines reach the console through group.run_log
            for members in groups:
                for i in members:  # not before: Ctrl-C would leave the others empty
                    lives[i].out.mkdir(parents=True, exist_ok=True)
                first = lives[members[0]]
                use_threads(first.cfg.threads, first.hydra_cfg.launcher)
                fmt = OmegaConf.select(
                    first.full_cfg, "hydra.job_logging.formatters.simple.format", default=None
                )

                def ended(k: int, outcome: group.Outcome, members: list[int] = members) -> None:
                    outcomes[members[k]] = outcome
                    self._ended(jobs[members[k]], outcome)  # the console, the live summary

                if members[0] in solo:
                    group.run_solo(first, fmt or _LOG_FORMAT, solo[members[0]], ended)
                else:
                    group.run_group([lives[i] for i in members], fmt or _LOG_FORMAT, ended)
        finally:
            self._hydra_logging()
        for i, (config, ret) in enumerate(jobs):
            if i not in lives:
                self._ended((config, ret), outcomes[i])
        return [ret for _, ret in jobs]

    def _compose(self, num: int, overrides: Sequence[str]) -> tuple[DictConfig, JobReturn]:
        """A job's config as Hydra's basic launcher and ``run_job`` make it: numbered, its
        folder resolved (made when its group starts, as ``run_job`` makes it when the job
        starts); and its JobReturn, still without an outcome."""
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = str(num)
            config.hydra.job.num = num
        hydra_cfg = hydra_config(config)
        HydraConfig.instance().cfg = hydra_cfg  # as set_config(config) sets it
        out = os.path.abspath(
            os.path.join(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir))
        )
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = out  # in hydra_cfg too: the same node
        task = _without_hydra(config)
        ret = JobReturn(
            overrides=OmegaConf.to_container(config.hydra.overrides.task),
            cfg=task,
            hydra_cfg=hydra_cfg,  # each job has its own
            working_dir=os.getcwd(),
            task_name=JobRuntime.instance().get("name"),
        )
        return config, ret

    def _ended(self, composed: tuple[DictConfig, JobReturn], outcome: group.Outcome) -> None:
        config, ret = composed
        if isinstance(outcome, BaseException):
            ret.status = JobStatus.FAILED
        else:
            ret.status = JobStatus.COMPLETED
        ret._return_value = outcome
        assert self.hydra_context is not None
        self.hydra_context.callbacks.on_job_end(config=config, job_return=ret)

    def _hydra_logging(self) -> None:
        assert self.config is not None and self.hydra_context is not None
        configure_log(
            self.config.hydra.hydra_logging,
            self.config.hydra.verbose,
            execution_whitelist=self.hydra_context.execution_whitelist,
        )


def hydra_config(config: DictConfig) -> DictConfig:
    """The Hydra config of the job ``config``, as ``HydraConfig.set_config(config)`` makes it
    (the ``hydra`` node, read-only, alone under a root of its own, its parent ``config`` so
    that it can interpolate the job's keys), but holding ``config``'s own node rather than a
    copy: the node is most of the config, ``config`` is this job's alone, and neither side
    writes to a read-only node."""
    OmegaConf.set_readonly(config.hydra, True)
    node = config._get_node("hydra")
    view = DictConfig(content={}, flags={"no_deepcopy_set_nodes": True})
    view["hydra"] = node
    view._set_flag("no_deepcopy_set_nodes", None)
    node._set_parent(config)  # as set_config sets it
    return view


def _without_hydra(config: DictConfig) -> DictConfig:
    """``config`` as the job sees it: a deep copy without its ``hydra`` node, as Hydra's
    ``run_job`` makes it (a copy, then the node deleted), but without copying the node first:
    it is most of the config, and a grid copies it once per job. (The node is handed to the
    copy as a stand-in already made, through deepcopy's own memo.)"""
    hydra = config._get_node("hydra")
    task = copy.deepcopy(config, memo={id(hydra): OmegaConf.create()})
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task
