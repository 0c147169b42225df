"""Guided search with Optuna: a persistent study that resumes, prunes, and survives failures.

:class:`Search` is the sweeper of hydra-optuna-sweeper (``OptunaSweeperImpl``) with its
``sweep`` loop replaced, made by the Hydra sweeper option ``search``
(:class:`mlp_sweep.sweepers.SearchSweeper`). Each batch of
trials still goes through Hydra's launcher, so ``hydra/launcher=joblib`` runs them in parallel.
What the loop adds:

- resume: the study lives in a storage (SQLite by default) and a re-run counts the trials
  already finished, so ``n_trials`` is a total, not an increment;
- heartbeats: the sweeper records one for every trial it launched; trials of a sweep that was
  killed go stale, are marked failed and are queued again with the same parameters;
- pruning: jobs report their per-epoch objective to the study (:func:`trial_reporter`) and stop
  when the configured pruner says so; the sweeper then records the trial as PRUNED;
- failures: a trial that raises or diverges is recorded as FAIL with its error; the sweep
  goes on until more than ``max_failure_rate`` of ``n_trials`` have failed;
- define-by-run spaces: ``space`` names a trusted function that draws each trial's settings
  (:mod:`mlp_sweep.spaces`), checked on throw-away trials before the first real one;
- several objectives (``objective=[val_acc,n_params]``): one study direction per metric, and
  the Pareto front reported instead of one best trial;
- a wall-time budget: after ``timeout`` seconds no new trial starts (the first batch of a
  session always does, as in Optuna's ``optimize``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from mlp_sweep import (
    callbacks,
    compose,
    console,
    drawing,
    identity,
    job,
    loggers,
    objectives,
    records,
    spaces,
)
from mlp_sweep.compose import JobComposer
from mlp_sweep.config import check_comparable, check_folder, check_objective
from mlp_sweep.errors import ConfigError, SweepFailed, one_line
from mlp_sweep.launchers import parallel_jobs
from mlp_sweep.study import (
    ERROR,
    PRUNED_AT,
    RDB_SCHEMES,
    RUN_DIR,
    TRUSTED,
    is_rdb,
    open_rdb,
    opens_elsewhere,
    scheme,
    sqlite_file,
    throwaway,
)
from mlp_sweep.sweepers import NopPrunerConf, composed, consecutive, failure

log = logging.getLogger(__name__)
# Optuna warns when heartbeats are used outside study.optimize and that stale-trial handling
# is experimental; both are used here on purpose, as the module docstring explains.
warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class Search(OptunaSweeperImpl):
    """hydra-optuna-sweeper's sweeper with resume, heartbeats, pruning and failure handling;
    Hydra's ``search`` sweeper (:class:`mlp_sweep.sweepers.SearchSweeper`) makes one."""

    def __init__(
        self,
        *,
        sampler: DictConfig,
        pruner: DictConfig | None,
        seed: int | None,
        constant_liar: bool,
        enqueue: Sequence[dict[str, Any]],
        heartbeat_interval: int,
        grace_period: int,
        max_retry: int,
        space: str | None,
        trusted_spaces: Sequence[str],
        timeout: float | None,
        **optuna_sweeper: Any,
    ) -> None:
        n_trials = optuna_sweeper["n_trials"]
        if n_trials < 1:
            raise ConfigError(
                f"hydra.sweeper.n_trials={n_trials} is invalid: must be a whole number >= 1"
            )
        rate = optuna_sweeper["max_failure_rate"]
        if not 0 <= rate <= 1:
            raise ConfigError(
                f"hydra.sweeper.max_failure_rate={rate} is invalid: must be between 0 and 1"
            )
        self.space = spaces.load(space, optuna_sweeper.pop("custom_search_space"), trusted_spaces)
        _check_space_sampler(self.space, sampler)
        self.timeout = _checked_timeout(timeout)
        # The sampler is built in sweep(), once the study shows how many trials it has.
        super().__init__(sampler=None, custom_search_space=None, **optuna_sweeper)
        self.sampler_settings = OmegaConf.to_container(sampler)
        if seed is not None and self.sampler_settings.get("seed", "absent") is None:
            self.sampler_settings["seed"] = seed
        if "constant_liar" in self.sampler_settings:
            self.sampler_settings["constant_liar"] = constant_liar
        del pruner  # read by each job from its Hydra config, to report and stop early
        self.enqueue = [_enqueued(i, entry) for i, entry in enumerate(enqueue)]
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retry = max_retry

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        # The study's name and storage as every trial's config resolves them: from the sweep's
        # config, whose resolver cache (a ${now:...} in the name) each trial's config copies.
        # (Hydra made this sweeper from a copy of the config, whose cache the trials lack.)
        self.study_name = config.hydra.sweeper.study_name
        self.storage = config.hydra.sweeper.storage
        # Trials of one shape (the same overrides, other values) are composed as a grid's jobs
        # are: the first by Hydra, the others from a copy of it (mlp_sweep.compose).
        self._composer = JobComposer(hydra_context.config_loader, config)
        # Optuna's own messages through the sweep's console handler, above the progress bar
        # rather than into its line.
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
        loggers.check(config)  # before the first trial, not once in every trial
        check_objective(config)  # the study's directions come from it
        check_folder("sweep")
        _check_pruning(config)
        _check_study(self.study_name, self.storage)
        if self.storage is None and config.hydra.sweeper.pruner._target_ != NopPrunerConf._target_:
            log.warning("the study is in memory, out of the trials' reach: no pruning")
        wanted = _direction(config.objective)
        try:  # as each trial builds it, once here so that bad arguments fail no trial
            pruner = instantiate(
                config.hydra.sweeper.pruner, _execution_whitelist_=TRUSTED["pruner"]
            )
            _try_pruner(pruner, wanted)
        except Exception as err:
            raise ConfigError(_refused("pruner", err)) from None
        if self.direction not in (None, wanted):
            raise ConfigError(
                f"hydra.sweeper.direction={self.direction} contradicts objective="
                f"{config.objective}, which is to {wanted}; leave the direction unset"
            )
        self.direction = wanted
        if self.n_jobs <= 0:
            self.n_jobs = parallel_jobs(config.hydra.launcher)

    def sweep(self, arguments: list[str]) -> None:
        self._process_searchspace_config()
        space, fixed, fixed_overrides = create_params_from_overrides(
            [*self._parse_sweeper_params_config(), *arguments]
        )
        for name in fixed:
            space.pop(name, None)
        self._check(space)
        fixed_job = [f"{name}={value}" for name, value in fixed.items()] + fixed_overrides
        variants = self._variants(space, fixed_job)
        if self.space is None:
            _check_enqueued(self.enqueue, space, "a searched parameter")
        else:
            drawn = self._check_space(space, fixed, fixed_overrides)
            what = (
                f"a parameter that hydra.sweeper.space={self.space.path} draws, nor a searched one"
            )
            _check_enqueued(self.enqueue, {**drawn, **space}, what)
        self._sampler(seed_offset=0)  # bad arguments are refused before a storage is created
        if (db := sqlite_file(self.storage)) is not None and not db.exists():
            identity.check_unclaimed(Path(self.sweep_dir))  # as identity.check would, later
        storage = self._open_storage()
        self.sampler = self._sampler(seed_offset=_trials_before(self.study_name, storage))
        self._use_grid(space)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            directions=objectives.directions(self.config.objective),
            load_if_exists=True,
        )
        identity.check(study, self._identity(space, fixed_job, variants))
        for params in self.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
        loggers.prepare(self.config, Path(self.sweep_dir))  # once the search is accepted
        drawing.expect_study(self.storage)
        log.info(
            "study %s: %d of %d trials finished; sampler %s, %d per batch, storage %s",
            study.study_name,
            _finished(study),
            self.n_trials,
            type(self.sampler).__name__,
            self.n_jobs,
            self.storage,
        )
        started = time.monotonic()
        self._within_budget(study)  # a study stopped by its failures stops again
        with _Heartbeats(storage, self.heartbeat_interval) as heartbeats:
            first = True
            while (batch := self._next_batch(started, study, first)) is not None:
                first = False
                self._within_budget(study)
                if batch == 0:  # only trials of other workers are left; wait for them
                    time.sleep(min(self.heartbeat_interval, 5))
                    continue
                trials = [study.ask() for _ in range(batch)]
                heartbeats.add(trials)
                overrides = self._configure_trials(trials, space, fixed, fixed_overrides)
                jobs = [(*o, f"trial={t.number}") for o, t in zip(overrides, trials)]
                ready = self._compose(study, trials, jobs)
                launched = [(t, j) for t, j in zip(trials, jobs) if j in ready]
                try:
                    returns = self._launch(ready, [t.number for t, _ in launched])
                except KeyboardInterrupt:
                    for trial, _ in launched:  # those whose run finished count; the rest go back
                        if not _settle(study, _stored(study, trial.number), self.config):
                            _retry(study, trial)
                    raise
                for (trial, _), ret in zip(launched, returns):
                    _tell(study, trial, ret)
                heartbeats.remove(trials)
                self._within_budget(study)
        self._report(study)

    def _compose(
        self, study: optuna.Study, trials: list[optuna.trial.Trial], jobs: list[tuple[str, ...]]
    ) -> dict[tuple[str, ...], DictConfig]:
        """Each trial's job config, by its overrides. A trial whose drawn values its config
        cannot take (``choice(32,abc)`` for an integer), or would place in another study or
        folder (:meth:`_moved`), fails before it runs, as a run that raises does, and the
        others go on."""
        ready = {}
        folders: dict[str, int] = {}  # each ready trial's folder -> its number
        for trial, overrides in zip(trials, jobs):
            try:
                cfg = self._composer.compose(overrides)
                folder = os.path.abspath(compose.number(cfg, trial.number))
            except (ConfigCompositionException, OmegaConfBaseException) as err:
                why = one_line(err)
                if err.__cause__ is not None:  # Hydra's line names the override, its cause why
                    why = f"{why}: {one_line(err.__cause__)}"
                _fail(study, trial, why)
                continue
            except ConfigError as err:
                _fail(study, trial, str(err))
                continue
            if (other := folders.setdefault(folder, trial.number)) != trial.number:
                subdir = self.config.hydra.sweep._get_node("subdir")._value()
                _fail(
                    study,
                    trial,
                    f"its folder {folder} is trial {other}'s too: hydra.sweep.subdir={subdir} "
                    "must give each trial a folder of its own (the default, ${trial}, does)",
                )
                continue
            if (moved := self._moved(cfg)) is not None:
                key, theirs, ours = moved
                _fail(
                    study,
                    trial,
                    f"its values change {key} to {theirs} from this search's {ours}; search "
                    f"values that leave it alone, or set {key} to a value that does not read "
                    "them",
                )
                continue
            ready[overrides] = cfg
        return ready

    def _launch(
        self, ready: dict[tuple[str, ...], DictConfig], numbers: list[int]
    ) -> list[JobReturn]:
        """Launch the trials numbered ``numbers``, whose configs ``ready`` holds, in order. A
        launcher numbers a launch's jobs in a row, from its first; so trials whose numbers
        another worker's trials (or a trial that failed to compose) split are launched apart,
        and each job's number (``${hydra:job.num}``) is its trial's."""
        assert self.hydra_context is not None
        jobs = list(ready)
        returns: list[JobReturn] = []
        with composed(self.hydra_context, ready):
            for run in consecutive(numbers):
                start = len(returns)
                returns += self.launcher.launch(jobs[start : start + len(run)], run[0])
        return returns

    def _identity(
        self, space: dict[str, Any], fixed_job: list[str], variants: dict[str, DictConfig]
    ) -> identity.Identity:
        """The search's identity: the settings of a trial's config with every fixed value
        (``fixed_job``) applied, and of each choice of a searched config group
        (:meth:`_variants`), the space, the folder."""
        shared = self._composer.compose(fixed_job)
        with _as_trial(shared):
            return identity.of(
                shared,
                space,
                self.space.path if self.space is not None else None,
                Path(self.sweep_dir),
                variants,
            )

    def _check(self, space: dict[str, Any]) -> None:
        """What can be told before the study is opened: the fixed settings, the losses the
        objective would compare, a grid sampler over a continuous space."""
        with _as_trial(copy.deepcopy(self.config)) as config:
            job.check(config)
        variants = {self.config.model.name}
        for key in ("model", "model.name"):
            if _is_choice(space.get(key)):
                variants = {str(choice) for choice in space[key].choices}
        check_comparable(self.config.objective, variants)
        if self.enqueue and _is_grid(self.sampler_settings):
            raise ConfigError(
                "hydra/sweeper/sampler=grid runs every point of its grid once: drop "
                "hydra.sweeper.enqueue, or use another sampler to try given points first"
            )
        continuous = [name for name, d in space.items() if _continuous(d)]
        if continuous and _is_grid(self.sampler_settings):
            what = "is a continuous interval" if len(continuous) == 1 else "are intervals"
            raise ConfigError(
                f"hydra/sweeper/sampler=grid needs a finite set of values for every "
                f"parameter, and {' and '.join(continuous)} {what}: give each as "
                "choice(...) or range(...), or use another sampler"
            )

    def _variants(self, space: dict[str, Any], fixed_job: list[str]) -> dict[str, DictConfig]:
        """Trial 0's config for each choice of each searched config group, by that choice
        (``data=digits``). A choice that would move a trial out of this search (``data``,
        which the default study name reads) is refused, before the study is opened."""
        groups = self.config.hydra.runtime.choices
        variants = {}
        for name, distribution in space.items():
            if name in groups and _is_choice(distribution):
                for choice in distribution.choices:
                    said = f"{name}={choice}"
                    with _as_trial(self._composer.compose([*fixed_job, said])) as cfg:
                        self._check_same_search(cfg, said, f"one {name}")
                    variants[said] = cfg
        return variants

    def _check_same_search(self, cfg: DictConfig, said: str, instead: str) -> None:
        """Refuse the overrides ``said`` if the trial config ``cfg`` they make would belong
        to another study or folder than this search's (:meth:`_moved`). ``instead``: what to
        search instead."""
        if (moved := self._moved(cfg)) is not None:
            key, theirs, ours = moved
            raise ConfigError(
                f"{said} cannot be searched: it changes {key} of a trial to {theirs} from "
                f"this search's {ours}; search {instead}, or set {key} to a value that does "
                "not read it"
            )

    def _moved(self, cfg: DictConfig) -> tuple[str, Any, Any] | None:
        """The first of the keys that place a trial (its study, storage and folder) whose
        value in the trial config ``cfg`` differs from this search's, with both values; None
        if there is none. A trial placed elsewhere would report to a study that does not hold
        it, and its run would be summarised nowhere."""
        ours = {
            "hydra.sweeper.study_name": self.study_name,
            "hydra.sweeper.storage": self.storage,
            "hydra.sweep.dir": str(self.sweep_dir),
        }
        with compose.as_job(cfg):  # ${hydra:runtime.cwd} in the storage: the job's own
            for key, value in ours.items():
                if (theirs := OmegaConf.select(cfg, key)) != value:
                    return key, theirs, value
        return None

    def _within_budget(self, study: optuna.Study) -> None:
        """Stop once more than ``max_failure_rate`` of ``n_trials`` have failed, counting the
        study's failures from every session that worked on it."""
        failed = _failed(study)
        if len(failed) > self.max_failure_rate * self.n_trials:
            # A trial refused by the job's checks keeps no run folder, so no summary row.
            if any(_has_record(trial) for trial in failed):
                where = f"the errors are in {self.sweep_dir}/{records.SUMMARY_MD}"
            else:
                where = f"the last: {failed[-1].user_attrs[ERROR]}"
            raise SweepFailed(
                f"{len(failed)} trials of study {study.study_name} failed, more than "
                f"max_failure_rate={self.max_failure_rate} of n_trials={self.n_trials}; "
                f"stopping the search ({where}; raise hydra.sweeper.max_failure_rate to go on)"
            )

    def _configure_trials(
        self,
        trials: list[optuna.trial.Trial],
        search_space_distributions: dict[str, Any],
        fixed_params: dict[str, Any],
        fixed_overrides: list[str],
    ) -> Sequence[Sequence[str]]:
        """Each trial's overrides: the fixed ones, those drawn from ``hydra.sweeper.params``,
        then those drawn by the define-by-run space, if there is one. A trial queued again
        (stale, interrupted) already holds the space's own parameters (``depth``, ``adam_lr``),
        which are not config keys: the space, drawing them again, gives its overrides."""
        if self.space is None:
            return super()._configure_trials(
                trials, search_space_distributions, fixed_params, fixed_overrides
            )
        jobs = []
        for trial in trials:
            (job,) = super()._configure_trials(
                [trial], search_space_distributions, fixed_params, fixed_overrides
            )
            own = set(trial.params) - set(search_space_distributions) - set(fixed_params)
            kept = [o for o in job if o.split("=", 1)[0] not in own]
            jobs.append((*kept, *spaces.to_overrides(self.space(self.config, trial))))
        return jobs

    def _check_space(
        self, searched: dict[str, Any], fixed: dict[str, Any], fixed_overrides: list[str]
    ) -> dict[str, Any]:
        """Refuse a space that cannot run, before the first trial: each of its checking draws
        is composed into a job config, with the fixed overrides, and validated. Returns the
        parameters the draws suggested, with their distributions."""
        assert self.space is not None
        fixed_args = [f"{k}={v}" for k, v in fixed.items()] + fixed_overrides

        def check(overrides: list[str]) -> None:
            with _as_trial(self._composer.compose([*fixed_args, *overrides])) as cfg:
                job.check(cfg)
                self._check_same_search(cfg, " ".join(overrides), "a space that leaves it alone")

        return self.space.check(self.config, fixed, searched, check)

    def _next_batch(self, started: float, study: optuna.Study, first: bool) -> int | None:
        """:meth:`_batch_size`, or None once the ``timeout`` has passed, but for the ``first``
        batch of the session, which starts whatever the timeout, as in Optuna's optimize."""
        if self.timeout is None or first or time.monotonic() - started < self.timeout:
            return self._batch_size(study)
        log.info(
            "timeout: %g s have passed, so no new trial starts; %d of %d trials finished",
            self.timeout,
            _finished(study),
            self.n_trials,
        )
        return None

    def _sampler(self, seed_offset: int) -> optuna.samplers.BaseSampler:
        """The configured sampler. A study that already has trials offsets its seed by their
        count (``seed_offset``), so a resumed search never replays the draws of its first
        session; but for the grid, whose seed orders the grid points that the trial numbers
        then pick."""
        settings = dict(self.sampler_settings)
        if settings.get("seed") is not None and not _is_grid(settings):
            settings["seed"] += seed_offset
        try:
            return instantiate(settings, _execution_whitelist_=TRUSTED["sampler"])
        except Exception as err:
            raise ConfigError(_refused("sampler", err)) from None

    def _batch_size(self, study: optuna.Study) -> int | None:
        """How many trials to ask for next: None when the study has its total."""
        for trial in _stale_running(study):
            _settle(study, trial, self.config)  # ended, though its sweep died before telling
        optuna.storages.fail_stale_trials(study)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        to_go = self.n_trials - _finished(study) - running
        if to_go > 0:
            return min(to_go, self.n_jobs)
        return 0 if running else None

    def _open_storage(self) -> Any:
        url = self.storage
        if not is_rdb(url):
            return url  # None (in memory) or a storage such as a journal file: no heartbeats
        # Workers started together on a new database all create its tables at once, and all
        # but one may fail at it; a second try finds the tables there.
        for attempt in range(1, 4):
            try:
                return open_rdb(
                    url,
                    heartbeat_interval=self.heartbeat_interval,
                    grace_period=self.grace_period,
                    heartbeat_stale_trial_callback=functools.partial(
                        _stale, max_retry=self.max_retry, config=self.config
                    ),
                )
            except Exception as err:
                if attempt == 3:
                    raise ConfigError(
                        f"hydra.sweeper.storage={url!r} cannot be opened: {one_line(err)}"
                    ) from None
                time.sleep(attempt)

    def _use_grid(self, space: dict[str, Any]) -> None:
        """GridSampler needs the search space itself, and the grid bounds the trial count."""
        sampler = self.sampler
        if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in space.items()}
            self.sampler = _Grid(grid, *sampler.args, **sampler.keywords)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))

    def _report(self, study: optuna.Study) -> None:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        sweep_dir = Path(self.sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        drawing.study_figures(
            study, self.storage, sweep_dir, objectives.names(self.config.objective)
        )
        if not done:
            log.warning("study %s has no complete trial yet", study.study_name)
            return
        if len(study.directions) > 1:
            self._report_pareto(study, sweep_dir)
            return
        best = study.best_trial
        OmegaConf.save(
            {"name": "optuna", "best_params": best.params, "best_value": best.value},
            sweep_dir / "optimization_results.yaml",
        )
        params = ", ".join(f"{k}={v}" for k, v in best.params.items())
        where = best.user_attrs.get(RUN_DIR, sweep_dir)
        console.say(
            f"Best trial: #{best.number} of {len(study.trials)}: {self.config.objective} "
            f"{best.value:.4f} ({params}), in {where}"
        )

    def _report_pareto(self, study: optuna.Study, sweep_dir: Path) -> None:
        """With several objectives no trial is best: save and print the Pareto front."""
        names = objectives.names(self.config.objective)
        front = sorted(study.best_trials, key=lambda t: t.number)
        OmegaConf.save(
            {
                "name": "optuna",
                "objectives": names,
                "pareto_front": [
                    {"trial": t.number, "values": t.values, "params": t.params} for t in front
                ],
            },
            sweep_dir / "optimization_results.yaml",
        )
        lines = [f"Pareto front: {len(front)} of {len(study.trials)} trials, on {', '.join(names)}"]
        for t in front:
            where = t.user_attrs.get(RUN_DIR, sweep_dir)
            lines.append(f"  #{t.number}: {objectives.show(names, t.values)}, in {where}")
        console.say("\n".join(lines))


def _direction(objective: Any) -> str | list[str]:
    """The study direction an objective needs: one, or a list for several metrics."""
    wanted = objectives.directions(objective)
    return wanted[0] if isinstance(objective, str) else wanted


def _check_pruning(config: DictConfig) -> None:
    """Optuna cannot prune a trial with several objectives: refuse a pruner with them."""
    names = objectives.names(config.objective)
    if len(names) > 1 and config.hydra.sweeper.pruner._target_ != NopPrunerConf._target_:
        choice = config.hydra.runtime.choices.get("hydra/sweeper/pruner")
        raise ConfigError(
            f"hydra/sweeper/pruner={choice} cannot prune a search with several objectives "
            f"(objective=[{','.join(names)}]): Optuna cannot prune those; set "
            "hydra/sweeper/pruner=none"
        )


def _try_pruner(pruner: optuna.pruners.BasePruner, direction: str | list[str]) -> None:
    """Ask the pruner about one report of a throw-away trial: some arguments (a hyperband
    ``max_resource=0``) are refused only when it first decides."""
    if isinstance(direction, list):
        return  # several objectives: no pruner but NopPruner (_check_pruning)
    trial = throwaway(direction=direction, pruner=pruner).ask()
    trial.report(0.0, step=1)
    trial.should_prune()


def _refused(part: str, err: Exception) -> str:
    """One line for a sampler or pruner that its arguments fail: its constructor's reason
    (Hydra's next lines name the config key, which the line names already)."""
    cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"hydra/sweeper/{part} cannot be built with these arguments: {reason}"


def _is_grid(sampler: dict[str, Any]) -> bool:
    return sampler.get("_target_") == "optuna.samplers.GridSampler"


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler, but for its end: it stops ``study.optimize`` once every point
    is visited, and the sweeper, which asks for trials itself, stops at the grid's size."""

    def after_trial(self, *args: Any) -> None:
        pass


def _check_study(name: Any, storage: Any) -> None:
    """A study needs a name, and a storage Optuna can open from a URL: a database, or none."""
    if not name:
        raise ConfigError(
            f"hydra.sweeper.study_name={'null' if name is None else repr(name)} is invalid: "
            "a search's study needs a name; "
            "give one, or leave the default (<search>-<data>-<objective>)"
        )
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(
            f"hydra.sweeper.study_name={name!r} is invalid: it names the study's folder; "
            "give a name without / or \\, other than . and .."
        )
    if isinstance(storage, str) and not is_rdb(storage):
        spelled = str(scheme(storage)).lower()
        spelled = "postgresql" if spelled == "postgres" else spelled  # as SQLAlchemy 1.3 took it
        raise ConfigError(
            f"hydra.sweeper.storage={storage!r} is invalid: give a database URL (sqlite:///"
            "<file>, postgresql://..., mysql://...), or null to keep the study in memory"
            + (f"; the scheme is spelled {spelled}://" if spelled in RDB_SCHEMES else "")
        )
    if is_rdb(storage) and not opens_elsewhere(storage):  # each opening gets a new database
        raise ConfigError(
            f"hydra.sweeper.storage={storage!r} is invalid: a SQLite database in memory is lost "
            "between trials; give a file (sqlite:///<file>), or null to keep the study in memory"
        )


def _trials_before(study_name: str, storage: Any) -> int:
    """How many trials the study has already: none if it is new."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False))


def _enqueued(index: int, entry: Any) -> dict[str, Any]:
    """An entry of ``hydra.sweeper.enqueue``: a mapping of parameter names to values."""
    if not isinstance(entry, DictConfig):
        raise ConfigError(
            f"hydra.sweeper.enqueue[{index}]={entry} is invalid: each entry must map "
            "parameters to values, e.g. hydra.sweeper.enqueue=[{lr: 0.1, hidden: 100}]"
        )
    return OmegaConf.to_container(entry)


def _check_enqueued(enqueued: Sequence[dict[str, Any]], space: dict[str, Any], what: str) -> None:
    """Refuse an enqueued parameter set that names a parameter the search has not (``what``
    says which it has), or a value that its parameter's distribution cannot hold."""
    for params in enqueued:
        for name, value in params.items():
            if name not in space:
                raise ConfigError(
                    f"hydra.sweeper.enqueue: {name} is not {what}; allowed: "
                    f"{', '.join(sorted(space)) or 'none (nothing is searched)'}"
                )
            if not _holds(space[name], value):
                shown = f"{value!r} (a string)" if isinstance(value, str) else value
                allowed = (
                    ", ".join(map(str, space[name].choices))
                    if _is_choice(space[name])
                    else f"a number (the search draws it from {identity.show(space[name])})"
                )
                raise ConfigError(
                    f"hydra.sweeper.enqueue: {name}={shown} is invalid: allowed: {allowed}"
                )


def _holds(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
    """Whether a trial may take ``value`` for a parameter of this distribution, as Optuna
    decides it. A number outside an interval is taken, as Optuna takes it (with a warning):
    a search may try a point beyond its range on purpose."""
    if isinstance(value, str) and not _is_choice(distribution):
        return False  # Optuna would cast "0.1"; the trial's config would get the string
    try:
        internal = distribution.to_internal_repr(value)
    except (ValueError, TypeError):
        return False
    return not _is_choice(distribution) or distribution._contains(internal)


def _is_choice(distribution: Any) -> bool:
    return isinstance(distribution, optuna.distributions.CategoricalDistribution)


def _check_space_sampler(space: spaces.Space | None, sampler: DictConfig) -> None:
    if space is not None and sampler.get("_target_") == "optuna.samplers.GridSampler":
        raise ConfigError(
            f"hydra/sweeper/sampler=grid needs the whole search space up front, so it cannot "
            f"run the define-by-run hydra.sweeper.space={space.path!r}; choose another sampler, "
            "e.g. hydra/sweeper/sampler=tpe or random"
        )


def _checked_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not timeout > 0:
        raise ConfigError(
            f"hydra.sweeper.timeout={timeout} is invalid: must be a number of seconds > 0, "
            "or null for no limit"
        )
    return timeout


def _continuous(distribution: Any) -> bool:
    return isinstance(distribution, optuna.distributions.FloatDistribution) and (
        distribution.step is None
    )


def _failed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that failed with an error of their own (not the ones that went stale)."""
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return [trial for trial in failed if ERROR in trial.user_attrs]


def _fail(study: optuna.Study, trial: optuna.trial.Trial, why: str) -> None:
    """Record that ``trial`` failed before it ran, for the reason ``why``."""
    trial.set_user_attr(ERROR, why[:1000])
    study.tell(trial, state=TrialState.FAIL)
    log.warning("trial %d failed: %s", trial.number, why)


def _has_record(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's run folder holds its record (a summary lists it)."""
    run_dir = trial.user_attrs.get(RUN_DIR)
    return run_dir is not None and (Path(run_dir) / records.METRICS_FILE).is_file()


def _finished(study: optuna.Study) -> int:
    """Trials that ran to an end: complete, pruned, or failed with an error of their own
    (not the ones that went stale because their sweep died)."""
    return sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and ERROR in t.user_attrs)
        for t in study.get_trials(deepcopy=False)
    )


def _tell(study: optuna.Study, trial: optuna.trial.Trial, ret: JobReturn) -> None:
    """Record a job's outcome in the study (unless it was told from the run's folder)."""
    if _stored(study, trial.number).state.is_finished():
        return
    run_dir = None
    if ret.hydra_cfg is not None:  # also where the job could not reach the study itself
        run_dir = str(ret.hydra_cfg.hydra.runtime.output_dir)
        trial.set_user_attr(RUN_DIR, run_dir)
    err = failure(ret)  # a bug, a divergence, bad parameters
    if err is None:
        try:
            values = _values(ret.return_value)
        except (TypeError, ValueError) as not_a_number:
            err = not_a_number
    if err is not None:
        trial.set_user_attr(ERROR, one_line(err)[:1000])
        study.tell(trial, state=TrialState.FAIL)
        # Not on the console where the trial's own line said it (console.ConsoleHandler).
        log.warning("trial %d failed: %s", trial.number, one_line(err), extra={"run_dir": run_dir})
        return
    pruned_at = _stored(study, trial.number).user_attrs.get(PRUNED_AT)  # set by the job
    if pruned_at is not None:
        study.tell(trial, state=TrialState.PRUNED)
        log.info("trial %d pruned after epoch %d", trial.number, pruned_at)
        return
    if not all(map(math.isfinite, values)):
        trial.set_user_attr(ERROR, f"the objective is {ret.return_value}")
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, values)


def _values(returned: Any) -> list[float]:
    """A job's objective as the list of numbers ``study.tell`` takes, also for one metric."""
    if isinstance(returned, (list, tuple)):
        return [float(v) for v in returned]
    return [float(returned)]


@contextlib.contextmanager
def _as_trial(cfg: DictConfig) -> Iterator[DictConfig]:
    """Meanwhile, the composed config ``cfg`` is a trial's job (trial 0, its first), so that
    ``${trial}``, ``${hydra:job.num}`` and the like resolve in it as they will in each trial."""
    with compose.as_job(_first_trial(cfg)):
        yield cfg


def _first_trial(cfg: DictConfig) -> DictConfig:
    """The composed config ``cfg`` made trial 0's job, as the sweeper and the launcher make
    a trial's: ``trial=0``, job number 0, its folder."""
    cfg.trial = 0
    compose.number(cfg, 0)
    return cfg


def _stale_running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Running trials whose sweep stopped beating, found as ``fail_stale_trials`` finds them.
    Only these may be told from their folders: a live sweep on the same study may have
    written its trial's end and not told the study yet."""
    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return []
    stale = set(storage._get_stale_trial_ids(study._study_id))
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [trial for trial in running if trial._trial_id in stale]


def _settle(study: optuna.Study, trial: optuna.trial.FrozenTrial, config: DictConfig) -> bool:
    """Tell a running trial whose run has ended (its sweep was stopped or killed after the
    run wrote its end, before it told the study) as its folder says: complete with its
    value, or pruned. True if told; a run that did not end is left to the caller."""
    run_dir = trial.user_attrs.get(RUN_DIR)
    if trial.state != TrialState.RUNNING or not run_dir:
        return False
    try:
        data = records.read_metrics(Path(run_dir))
    except ValueError:
        return False
    if (data.get("trial") or {}).get("number") != trial.number:
        return False  # the folder holds another trial's run
    value = data["objective"]["value"]
    if data["status"] == records.PRUNED:
        study.tell(trial.number, state=TrialState.PRUNED)
    elif data["status"] == records.COMPLETE and value is not None:
        values = _values(value)
        if not all(map(math.isfinite, values)):
            return False
        study.tell(trial.number, values)
    else:
        return False
    loggers.settle(config, Path(run_dir), data)
    log.info("trial %d ended before its sweep stopped: told %s", trial.number, data["status"])
    return True


def _stale(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, max_retry: int, config: DictConfig
) -> None:
    """A trial whose sweep stopped beating: mark its run failed, then queue it again."""
    run_dir = trial.user_attrs.get(RUN_DIR)
    if run_dir:
        error = "its sweep stopped while it ran (no heartbeat); queued again"
        data = _mark_failed(Path(run_dir), error)
        if data is not None:
            loggers.settle(config, Path(run_dir), data)
            callbacks.ended_elsewhere(Path(run_dir))
    log.warning("trial %d went stale; queued again with the same parameters", trial.number)
    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, trial)


def _retry(study: optuna.Study, trial: optuna.trial.Trial) -> None:
    """Give an interrupted trial back: failed, and queued again with its parameters."""
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    RetryHeartbeatStaleTrialCallback()(study, _stored(study, trial.number))


def _stored(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """A trial as the storage has it now, with what other processes wrote to it (a ``Trial``
    object keeps the copy it was created with)."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _mark_failed(run_dir: Path, error: str) -> dict[str, Any] | None:
    """Mark a run that its folder says is running failed; its new record, or None."""
    try:
        data = records.read_metrics(run_dir)
    except ValueError:
        return None  # the job never wrote its metrics: nothing claims it is running
    if data["status"] != records.RUNNING:
        return None
    data.update(status=records.FAILED, error=error)
    records.write_json(run_dir / records.METRICS_FILE, data)
    return data


class _Heartbeats:
    """Heartbeats for the trials this sweeper launched, from one thread, every ``interval`` s.

    Optuna's own heartbeat runs inside ``study.optimize``; trials launched through Hydra run
    in other processes, so the sweeper beats for them while they are out.
    """

    def __init__(self, storage: Any, interval: int) -> None:
        self._storage = storage
        self._enabled = isinstance(storage, RDBStorage)  # opened with heartbeats on
        self._interval = interval
        self._trial_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeats", daemon=True)

    def __enter__(self) -> _Heartbeats:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join()

    def add(self, trials: Sequence[optuna.trial.Trial]) -> None:
        for trial in trials:
            self._trial_ids.add(trial._trial_id)
            if self._enabled:  # at once: a trial without any heartbeat never goes stale
                self._storage.record_heartbeat(trial._trial_id)

    def remove(self, trials: Sequence[optuna.trial.Trial]) -> None:
        self._trial_ids.difference_update(t._trial_id for t in trials)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            for trial_id in list(self._trial_ids):
                self._storage.record_heartbeat(trial_id)
