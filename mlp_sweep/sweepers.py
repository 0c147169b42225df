"""Hydra sweepers, registered as Hydra plugins through the `hydra.plugins` entry point.

`grid` is Hydra's basic sweeper checking every job before the first job starts. `search` is
the Optuna search of :mod:`mlp_sweep.search`; Hydra imports every plugin at start-up, `--help`
included, so here are only its config and a thin class that imports the search (Optuna,
torch) when a search is made, as hydra-optuna-sweeper does with its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf, TPESamplerConfig
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from mlp_sweep import compose, records
from mlp_sweep.compose import JobComposer
from mlp_sweep.config import check_comparable, check_folder, check_one_objective
from mlp_sweep.errors import BadInput, ConfigError, RunFailed, SweepFailed, one_line

log = logging.getLogger(__name__)


@dataclass
class GridSweeperConf(BasicSweeperConf):
    _target_: str = "mlp_sweep.sweepers.GridSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf)


@dataclass
class SearchSweeperConf(OptunaSweeperConf):
    _target_: str = "mlp_sweep.sweepers.SearchSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    direction: Any = None  # follows from `objective`; set it only to assert it
    n_jobs: int = 0  # trials per batch; 0: as many as the launcher runs at once
    max_failure_rate: float = 0.5  # of n_trials; the sweep stops once more have failed
    seed: int | None = 1  # given to the sampler unless the sampler config sets its own
    constant_liar: bool = True  # for TPE: parallel trials of a batch do not repeat a point
    pruner: Any = MISSING  # filled by the hydra/sweeper/pruner group (none by default)
    enqueue: list[Any] = field(default_factory=list)  # parameter sets to try first
    heartbeat_interval: int = 10  # seconds
    grace_period: int = 30  # seconds without a heartbeat before a running trial is stale
    max_retry: int = 3  # times a stale trial is queued again
    space: str | None = None  # a define-by-run space: the dotted path of f(cfg, trial)
    trusted_spaces: list[str] = field(default_factory=list)  # spaces outside mlp_sweep.* to run
    timeout: float | None = None  # seconds; after it no new trial starts


@dataclass
class TPEMultivariateSamplerConf(TPESamplerConfig):
    """TPE modelling the parameters jointly, and apart for each set of parameters that trials
    share: what Optuna advises for a define-by-run space whose branches draw different ones.
    It starts modelling after 5 random trials, not 10: a search on a time budget may have
    few more."""

    multivariate: bool = True
    group: bool = True
    n_startup_trials: int = 5


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 3
    n_warmup_steps: int = 2
    interval_steps: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = 1
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="search", node=SearchSweeperConf)
_store.store(
    group="hydra/sweeper/sampler", name="tpe_multivariate", node=TPEMultivariateSamplerConf
)
for _name, _node in {
    "none": NopPrunerConf,
    "median": MedianPrunerConf,
    "successive_halving": SuccessiveHalvingPrunerConf,
    "hyperband": HyperbandPrunerConf,
}.items():
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_node)


class SearchSweeper(Sweeper):
    """``hydra/sweeper=search``: a guided search with Optuna (:class:`mlp_sweep.search.Search`)."""

    def __init__(self, **settings: Any) -> None:
        from mlp_sweep.search import Search

        self.search = Search(**settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)


def _check_one_folder(
    config: DictConfig, configs: Sequence[DictConfig], jobs: Sequence[Sequence[str]]
) -> None:
    """Refuse a ``hydra.sweep.dir`` that a job resolves to a folder other than the sweep's
    (``s_${lr}``, ``s_${hydra:job.override_dirname}``): the jobs would be spread over
    folders, and the summary would cover those in the sweep's only."""
    sweep_dir = str(config.hydra.sweep.dir)
    for num, cfg in enumerate(configs):
        with compose.as_job(cfg):  # ${hydra:...} in it is the job's own
            theirs = str(cfg.hydra.sweep.dir)
        if theirs != sweep_dir:
            raw = config.hydra.sweep._get_node("dir")._value()
            raise ConfigError(
                f"hydra.sweep.dir={raw} gives job #{num} ({' '.join(jobs[num])}) the folder "
                f"{theirs}, not the sweep's folder {sweep_dir}: a sweep has one folder (name "
                "its jobs' folders with hydra.sweep.subdir)"
            )


def _composed(composer: JobComposer, num: int, overrides: list[str], jobs: int) -> DictConfig:
    """Job ``num``'s config; one of several that cannot be composed is named (a key that
    one of the grid's config group choices lacks: ``optimizer=sgd,adam
    optimizer.momentum=0.5``)."""
    try:
        return composer.compose(overrides)
    except ConfigCompositionException as err:
        if jobs == 1 or isinstance(err, MissingConfigException):
            raise  # one job, or a message that names its value (model=foo is invalid)
        raise ConfigCompositionException(
            f"job #{num} ({' '.join(overrides)}) cannot be composed: {err}"
        ) from err.__cause__


class GridSweeper(BasicSweeper):
    """Compose and check all jobs of the grid up front, so one bad value (``lr=0.1,-1``), an
    optimizer setting the optimizer refuses, or a job folder holding another run stops the
    sweep before anything trains or any folder changes.

    The launcher then gets the configs composed here instead of composing each job again
    (Hydra's basic sweeper composes every job twice: to check it, then to launch it), and
    jobs that differ only in plain values share one composition (:mod:`mlp_sweep.compose`).
    """

    @staticmethod
    def split_arguments(
        overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """Hydra's grid of the overrides, except that ``~key`` stays as it was given: Hydra's
        basic sweeper writes it ``~key=null``, which deletes the key only if it is null."""
        bare = {
            f"{o.get_key_element()}=null": o.get_key_element()
            for o in overrides
            if o.is_delete() and o.input_line == o.get_key_element()
        }
        batches = BasicSweeper.split_arguments(overrides, max_batch_size)
        return [[[bare.get(arg, arg) for arg in job] for job in batch] for batch in batches]

    def sweep(self, arguments: list[str]) -> Any:
        # Imported here: Hydra imports every plugin at start-up, --help included.
        from mlp_sweep import job

        assert self.hydra_context is not None and self.config is not None
        check_folder("sweep")
        # Resolve the sweep folder first: jobs composed from the master config copy its
        # resolver cache, so they all land in this folder (its name has a random part).
        str(self.config.hydra.sweep.dir)
        loader = self.hydra_context.config_loader
        parser = OverridesParser.create(config_loader=loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        batches = self.split_arguments(overrides, self.max_batch_size)
        jobs = [list(j) for batch in batches for j in batch]
        composer = JobComposer(loader, self.config)
        configs = [_composed(composer, num, job_, len(jobs)) for num, job_ in enumerate(jobs)]
        folders = [compose.number(cfg, num) for num, cfg in enumerate(configs)]
        _check_one_folder(self.config, configs, jobs)
        if (shared := compose.shared_folder(folders)) is not None:
            first, second = shared
            subdir = self.config.hydra.sweep._get_node("subdir")._value()
            raise ConfigError(
                f"hydra.sweep.subdir={subdir} gives jobs #{first} ({' '.join(jobs[first])}) "
                f"and #{second} ({' '.join(jobs[second])}) one folder, {folders[first]}: "
                "each job needs a folder of its own (the default subdir, ${hydra.job.num}, "
                "gives one)"
            )
        for cfg in configs:
            with compose.as_job(cfg):  # ${hydra:job.num} is the job's own number
                job.check(cfg)
        check_one_objective([cfg.objective for cfg in configs])
        variants = {c.model.name for c in configs}
        for cfg in configs:
            check_comparable(cfg.objective, variants)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # From here to its end the sweep holds its folder: a second grid sweep started into it
        # would see the same unfinished runs and train them again.
        with _only_sweep(sweep_dir, str(self.config.hydra.sweep.dir)):
            return self._run(jobs, configs, folders, batches, sweep_dir)

    def _run(
        self,
        jobs: list[list[str]],
        configs: list[DictConfig],
        folders: list[Path],
        batches: list[list[list[str]]],
        sweep_dir: Path,
    ) -> Any:
        """Check the jobs' folders, then launch the jobs they do not hold finished."""
        from mlp_sweep import checkpoint, job, loggers

        assert self.hydra_context is not None and self.config is not None
        settled = {}  # jobs whose folders hold their run finished: kept, not launched
        for num, (cfg, folder) in enumerate(zip(configs, folders)):
            if not folder.is_dir():  # a fresh folder: nothing to keep
                continue
            with compose.as_job(cfg):  # its ${hydra:...} values are its own, as in check
                plan = checkpoint.plan(folder, _task(cfg))  # refuses a folder it may not use
            if plan.action in (checkpoint.KEEP, checkpoint.KEEP_FAILED):
                settled[num] = (folder, plan)
        ready = {tuple(j): cfg for j, cfg in zip(jobs, configs)}
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        loggers.prepare(self.config, sweep_dir)  # once the sweep is accepted
        failures: list[tuple[list[str], BaseException]] = []
        for num, (folder, plan) in settled.items():
            if plan.action == checkpoint.KEEP:
                log.info("#%d %s is complete already; kept as it is", num, folder)
            else:
                failures.append((jobs[num], job.kept_failure(folder, plan.error)))
                log.info("#%d %s failed before; kept as it is", num, folder)
        returns: list[JobReturn] = []
        with composed(self.hydra_context, ready):
            first = 0
            for batch in batches:  # every batch runs, whatever the earlier ones' failures
                nums = [n for n in range(first, first + len(batch)) if n not in settled]
                first += len(batch)
                for run in consecutive(nums):  # the launcher numbers a launch's jobs in a row
                    returns += self.launcher.launch([jobs[n] for n in run], initial_job_idx=run[0])
        failures += [(ret.overrides, err) for ret in returns if (err := failure(ret)) is not None]
        _report_failures(returns, failures, len(jobs), sweep_dir)
        return [returns]


@contextlib.contextmanager
def _only_sweep(sweep_dir: Path, named: str) -> Iterator[None]:
    """Hold the sweep folder's lock while the body runs; refuse a folder another grid sweep
    holds, which would train the same runs a second time. (flock: a killed holder's lock
    goes with it.)"""
    import fcntl

    with open(sweep_dir / records.SWEEP_LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise BadInput(
                f"hydra.sweep.dir={named} is in use by another sweep (pid {holder}); "
                "wait for it or choose another folder"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def failure(ret: JobReturn) -> BaseException | None:
    """The error a job raised, if it failed. (``ret.return_value`` raises it, and Hydra prints
    a line of its own to stderr first.)"""
    return ret._return_value if ret.status is JobStatus.FAILED else None


def _report_failures(
    returns: Sequence[JobReturn],
    failures: Sequence[tuple[Sequence[str], BaseException]],
    total: int,
    sweep_dir: Path,
) -> None:
    """Raise for the jobs that failed: anything unexpected with its traceback, then the first
    bad input as it is (one line, exit 2), then runs that failed on their own (diverged) as
    one SweepFailed."""
    for ret in returns:
        err = failure(ret)
        if err is not None and not isinstance(err, (BadInput, RunFailed)):
            ret.return_value  # noqa: B018 (raises the job's error with its traceback)
    for _, err in failures:
        if isinstance(err, BadInput):
            raise err
    if failures:
        overrides, err = failures[0]
        raise SweepFailed(
            f"{len(failures)} of {total} jobs failed; the first ({' '.join(overrides)}): "
            f"{one_line(err)}; every error is listed in {sweep_dir / records.SUMMARY_MD}"
        )


def consecutive(nums: Sequence[int]) -> list[list[int]]:
    """Runs of consecutive numbers.

    >>> consecutive([0, 1, 3, 4, 5, 7])
    [[0, 1], [3, 4, 5], [7]]
    """
    runs: list[list[int]] = []
    for n in nums:
        if runs and runs[-1][-1] == n - 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


def _task(cfg: DictConfig) -> DictConfig:
    """A job's config as the job sees it: without the ``hydra`` node."""
    task = cfg.copy()
    with open_dict(task):
        del task["hydra"]
    return task


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


@contextlib.contextmanager
def composed(context: HydraContext, configs: dict[tuple[str, ...], DictConfig]) -> Iterator[None]:
    """Meanwhile, the launcher sharing ``context`` takes its jobs' configs from ``configs``
    (:class:`_Composed`) rather than have Hydra compose each from scratch; a launcher that
    composes in processes of its own gets them there too."""
    loader = context.config_loader
    context.config_loader = _Composed(loader, configs)
    try:
        yield
    finally:
        context.config_loader = loader
