"""A grid's jobs composed by :class:`mlp_sweep.compose.JobComposer` are exactly the configs
Hydra's own ``load_sweep_config`` composes, across every kind of override."""

from __future__ import annotations

import copy
import functools

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import setup_globals
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from mlp_sweep.app import CONFIG_DIR
from mlp_sweep.compose import JobComposer
from mlp_sweep.stacked_launcher import _without_hydra, hydra_config
from mlp_sweep.sweepers import GridSweeper

SWEEPS = {
    "values": ["hidden=50,100,200", "lr=0.1,0.5"],
    "lists": ["hidden=[256,128],[30],7"],
    "range": ["hidden=range(10,40,10)", "init_std=0.1"],
    "group choices": ["model=sigmoid_mse,softmax_ce", "optimizer=sgd,adam", "lr=0.1,0.01"],
    "glob": ["model=glob(*)", "init_std=0.01,0.1"],
    "add": ["+optimizer.foreach=true,false", "lr=0.1,0.2"],
    "force add": ["++seed=3,4", "hidden=20,30"],
    "delete": ["~optimizer.momentum", "lr=0.1,0.2"],
    "interpolation": ["batch_size=${hidden}", "hidden=50,100"],
    "swept interpolation": ["batch_size=${hidden},32", "hidden=50,100"],
    "quotes": ["data.cache_dir='/tmp/a b','/tmp/c,d',\"/tmp/e\"", "lr=0.1,0.2"],
    "one key twice": ["lr=0.3", "lr=0.1,0.2"],
    "swept before fixed": ["optimizer.lr=0.1,0.2", "hidden=5,6", "optimizer.lr=0.3"],
    "nested and parent": ["optimizer.lr=0.1,0.2", "optimizer={lr:0.5}"],
    "hydra keys": ["hydra.job.name=a", "hydra.verbose=true", "hidden=10,20"],
    "experiment": ["experiment=l09_softmax_ce", "epochs=1,2"],
    "list extend": ["hidden=[10]", "hidden=extend_list(20),extend_list(30,40)"],
}


def _loader_and_master(arguments: list[str]):
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(CONFIG_DIR))
    master = loader.load_configuration("config", arguments, run_mode=RunMode.MULTIRUN)
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    jobs = [list(job) for batch in GridSweeper.split_arguments(parsed, None) for job in batch]
    return loader, master, jobs


def _composed(compose, job):
    try:
        cfg = compose(job)
    except ConfigCompositionException as err:
        return ("refused", str(err))
    return OmegaConf.to_container(cfg, resolve=False), _nodes(cfg)


def _nodes(node, path="") -> list:
    """Every node of a config with what OmegaConf knows of it beyond its value: its class,
    its type, the type it was declared with, whether it may be None, and its flags."""
    meta = node._metadata
    flags = {flag: node._get_flag(flag) for flag in ("struct", "readonly", "allow_objects")}
    seen = [(path, type(node).__name__, meta.object_type, meta.ref_type, meta.optional, flags)]
    if isinstance(node, (DictConfig, ListConfig)) and not node._is_missing():
        keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
        for key in [] if node._is_none() or node._is_interpolation() else keys:
            seen += _nodes(node._get_node(key), f"{path}.{key}")
    return seen


@pytest.mark.parametrize("arguments", SWEEPS.values(), ids=SWEEPS.keys())
def test_each_job_is_the_config_hydra_composes(arguments):
    loader, master, jobs = _loader_and_master(arguments)
    composer = JobComposer(loader, master)
    assert len(jobs) > 1
    composed = 0
    for job in jobs:
        expected = _composed(lambda j: loader.load_sweep_config(master, j), job)
        assert _composed(composer.compose, job) == expected, job
        composed += expected[0] != "refused"
    assert composed > 1  # not two refusals compared


def test_a_config_group_on_the_search_path_is_composed_as_hydra_composes_it(tmp_path):
    """Config groups that only ``hydra.searchpath`` adds are choices too: ``console`` (also a
    key of the config) and ``act`` (not one), chosen in an experiment of the same path."""
    for name, text in {
        "experiment/mine.yaml": "defaults:\n  - /console: epochs\n  - /act: relu\n",
        "console/epochs.yaml": "console: epochs\nthreads: 1\nseed: 7\n",
        "console/auto.yaml": "console: auto\nseed: 1\n",
        "act/relu.yaml": "model:\n  activation: relu\n",
        "act/tanh.yaml": "model:\n  activation: tanh\nepochs: 3\n",
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"# @package _global_\n{text}")
    loader, master, jobs = _loader_and_master(
        [f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine", "console=epochs,auto",
         "act=relu,tanh", "lr=0.1,0.2"]
    )  # fmt: skip
    composer = JobComposer(loader, master)
    for job in jobs:
        expected = _composed(lambda j: loader.load_sweep_config(master, j), job)
        assert expected[0] != "refused", expected
        assert _composed(composer.compose, job) == expected, job


# Jobs composed one after another, as a search composes them: the config of its fixed
# settings, each config group choice, then trials that add their drawn values.
SEQUENCES = {
    "a trial after its choice": [
        ["epochs=1", "model=softmax_ce"],
        ["lr=0.3", "hidden=20", "model=softmax_ce", "epochs=1", "trial=0"],
        ["lr=0.2", "hidden=30", "model=softmax_ce", "epochs=1", "trial=1"],
    ],
    "choices in another order": [
        ["optimizer=adam", "model=softmax_ce", "epochs=1"],
        ["model=softmax_ce", "lr=0.01", "optimizer=adam", "epochs=1"],
    ],
    "a value left out": [["lr=0.3", "hidden=5"], ["hidden=6"]],
    "a value Hydra refuses": [["hidden=5"], ["hidden=5", "batch_size=abc"]],
    "a key that is not there": [["epochs=1"], ["epochs=1", "hiden=3"]],
    "a key of a choice": [["optimizer=adam"], ["optimizer=adam", "optimizer.lr=0.1"]],
    "keys of a choice set before it": [
        ["optimizer.momentum=0.5", "optimizer=sgd", "optimizer.nesterov=true"],
        ["optimizer.momentum=0.7", "optimizer=sgd", "optimizer.nesterov=false", "lr=0.2"],
    ],
    "a key the other choice lacks": [
        ["optimizer=sgd", "optimizer.momentum=0.5"],
        ["optimizer=adam", "optimizer.momentum=0.5"],
    ],
    "a key set then deleted": [
        ["optimizer.momentum=0.5", "~optimizer.momentum"],
        ["~optimizer.momentum", "optimizer.momentum=0.5", "lr=0.1"],
    ],
    "an added key set": [
        ["+optimizer.foreach=true"],
        ["+optimizer.foreach=true", "optimizer.foreach=false", "lr=0.1"],
    ],
    "an appended choice": [["+experiment=l09_softmax_ce"], ["+experiment=l09_softmax_ce", "lr=1"]],
    "a choice twice": [["model=softmax_ce"], ["model=softmax_ce", "model=softmax_ce", "lr=1"]],
    "an interpolation to an added value": [
        ["batch_size=${hidden}"],
        ["batch_size=${hidden}", "hidden=50", "trial=3"],
    ],
}


@functools.cache
def _sweep_of_sequences():
    """Hydra's loader and the sweep's config that every sequence of jobs is composed from:
    the same for each (Hydra, too, composes every job of a sweep from one), so made once
    rather than once per Hypothesis example."""
    loader, master, _ = _loader_and_master(["hidden=1,2"])
    return loader, master


def _compare_one_after_another(jobs: list[list[str]]) -> None:
    """Compose ``jobs`` in order with one JobComposer, each compared with Hydra's own."""
    loader, master = _sweep_of_sequences()
    before = _nodes(master), OmegaConf.to_container(master, resolve=False)
    composer = JobComposer(loader, master)
    for job in jobs:
        expected = _composed(lambda j: loader.load_sweep_config(master, j), job)
        assert _composed(composer.compose, job) == expected, job
    # the next sequence starts from it: composing leaves it as it was
    assert (_nodes(master), OmegaConf.to_container(master, resolve=False)) == before


@pytest.mark.parametrize("jobs", SEQUENCES.values(), ids=SEQUENCES.keys())
def test_a_job_after_another_is_the_config_hydra_composes(jobs):
    _compare_one_after_another(jobs)


# Overrides a job of a sweep may hold, in any order: config group choices, values (of keys
# of a choice too), lists, an interpolation, an added and a deleted key.
POOL = [
    "model=softmax_ce", "optimizer=adam", "optimizer=sgd", "lr=0.1", "lr=0.2", "hidden=5",
    "hidden=[6,7]", "optimizer.lr=0.3", "optimizer.momentum=0.5", "batch_size=${epochs}",
    "epochs=2", "+optimizer.foreach=true", "~optimizer.momentum", "seed=3",
]  # fmt: skip
JOBS = st.lists(st.sampled_from(POOL), max_size=5, unique=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JOBS, min_size=2, max_size=4))
def test_any_jobs_one_after_another_are_the_configs_hydra_composes(jobs):
    _compare_one_after_another(jobs)


def test_a_searchs_trials_start_from_the_config_of_their_choice(monkeypatch):
    """Hydra composes a search's fixed settings with each config group choice once; each
    trial of that choice starts from that config and adds its drawn values."""
    loader, master, _ = _loader_and_master(["hidden=1,2"])
    composer = JobComposer(loader, master)
    variants = [["epochs=1", f"model={m}"] for m in ("sigmoid_mse", "softmax_ce")]
    for job in variants:
        composer.compose(job)
    calls = []
    monkeypatch.setattr(
        loader, "load_sweep_config", lambda *a: calls.append(a) or pytest.fail("composed anew")
    )
    for n, (lr, model) in enumerate(
        [(0.1, "softmax_ce"), (0.2, "sigmoid_mse"), (0.3, "softmax_ce")]
    ):
        cfg = composer.compose([f"lr={lr}", f"model={model}", "epochs=1", f"trial={n}"])
        assert (cfg.lr, cfg.model.name, cfg.epochs, cfg.trial) == (lr, model, 1, n)
    assert calls == []


def test_trials_that_set_keys_of_their_choice_start_from_one_composed(monkeypatch):
    """A space drawing an optimizer and its settings (``hparams_search=wide``): each
    optimizer's first trial is composed by Hydra, its later trials start from it."""
    loader, master, _ = _loader_and_master(["hidden=1,2"])
    composer = JobComposer(loader, master)
    composed = []
    compose = loader.load_sweep_config
    monkeypatch.setattr(
        loader, "load_sweep_config", lambda m, o: composed.append(o) or compose(m, o)
    )
    for n, momentum in enumerate([0.1, 0.2, 0.3]):
        job = ["optimizer=sgd", f"optimizer.momentum={momentum}", f"hidden=[{n + 5}]"]
        cfg = composer.compose([*job, f"trial={n}"])
        assert (cfg.optimizer.momentum, list(cfg.hidden), cfg.trial) == (momentum, [n + 5], n)
    assert len(composed) == 1


def test_a_key_deleted_in_a_grid_is_deleted_whatever_its_value():
    loader, master, jobs = _loader_and_master(["~optimizer.momentum", "~tags", "lr=0.1,0.2"])
    for job in jobs:
        cfg = loader.load_sweep_config(master, job)
        assert "momentum" not in cfg.optimizer and "tags" not in cfg, job


def test_a_job_config_changed_afterwards_leaves_the_next_jobs_alone():
    loader, master, jobs = _loader_and_master(["hidden=50,100,200"])
    composer = JobComposer(loader, master)
    first = composer.compose(jobs[0])
    first.epochs = 99  # a launcher sets fields of a job's config (hydra.job.num, ...)
    assert [composer.compose(j).epochs for j in jobs[1:]] == [master.epochs] * 2


def _hydra_task(config):
    """A job's config without its hydra node, as Hydra's run_job makes it."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


@pytest.mark.parametrize("arguments", SWEEPS.values(), ids=SWEEPS.keys())
def test_the_stacked_launcher_hands_each_job_the_configs_run_job_would(arguments):
    """The job's own config (without its hydra node) and its Hydra config (the node alone,
    as ``HydraConfig.set_config`` makes it), each as Hydra's ``run_job`` makes them."""
    setup_globals()  # the resolvers a job's Hydra config uses (now, hydra)
    loader, master, jobs = _loader_and_master(arguments)
    for job in jobs:
        try:
            config = loader.load_sweep_config(master, job)
        except ConfigCompositionException:
            continue
        with open_dict(config):  # as the launcher sets them
            config.hydra.job.num, config.hydra.job.id = 3, "3"
            config.hydra.runtime.output_dir = "/tmp/3"
        before = OmegaConf.to_yaml(config)
        task, expected = _without_hydra(config), _hydra_task(config)
        assert OmegaConf.to_yaml(task) == OmegaConf.to_yaml(expected), job
        assert OmegaConf.to_container(task, resolve=True) == OmegaConf.to_container(
            expected, resolve=True
        )
        assert OmegaConf.get_type(task) is OmegaConf.get_type(expected)
        assert OmegaConf.is_struct(task) == OmegaConf.is_struct(expected)
        assert OmegaConf.to_yaml(config) == before  # the job's own config is left whole
        assert config.hydra._get_parent() is config
        task.seed = 12345  # a copy: the job's config does not change with it
        assert config.seed != 12345

        HydraConfig.instance().set_config(config)
        expected = HydraConfig.instance().cfg
        view = hydra_config(config)
        assert OmegaConf.to_yaml(view) == OmegaConf.to_yaml(expected), job
        assert OmegaConf.to_container(view, resolve=True) == OmegaConf.to_container(
            expected, resolve=True
        )
        assert OmegaConf.get_type(view, "hydra") is OmegaConf.get_type(expected, "hydra")
        assert OmegaConf.is_readonly(view.hydra) and OmegaConf.is_readonly(config.hydra)
        assert view.hydra._get_parent() is config and config.hydra._get_parent() is config
        assert view.keys() == expected.keys()
        probe = OmegaConf.create({"probe": "${hydra:job.name} ${hydra:runtime.choices.model}"})
        HydraConfig.instance().cfg = view  # ${hydra:...} in a job's config resolves alike
        seen = probe.probe
        HydraConfig.instance().cfg = expected
        assert seen == probe.probe


@pytest.mark.parametrize(
    "arguments",
    [
        ["hparams_search=optuna"],  # values and a config group choice (model)
        ["hparams_search=wide", "epochs=1"],  # a define-by-run space: depth, optimizer, ...
    ],
    ids=["params", "space"],
)
def test_a_searchs_trials_are_the_configs_hydra_composes(run_app, tmp_path, arguments):
    """A search composes its trials as a grid composes its jobs (:class:`JobComposer`):
    each trial's config on disk is the one Hydra composes from the trial's overrides."""
    arguments = [*arguments, "hydra.sweeper.n_trials=6", "epochs=1", "hydra.sweep.dir=s"]
    result = run_app(*arguments)
    assert result.code == 0, result.err
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(CONFIG_DIR))
    said = [*arguments, "hydra.mode=MULTIRUN"]  # as Hydra adds it to a search without -m
    master = loader.load_configuration("config", said, run_mode=RunMode.MULTIRUN)
    trials = sorted((tmp_path / "s").glob("*/.hydra"))
    assert len(trials) == 6
    shapes = set()
    for trial in trials:
        overrides = list(OmegaConf.load(trial / "overrides.yaml"))
        shapes.add(tuple(o.split("=")[0] for o in overrides))
        expected = loader.load_sweep_config(master, overrides)
        written = OmegaConf.load(trial / "config.yaml")
        assert OmegaConf.to_yaml(written) == OmegaConf.to_yaml(_hydra_task(expected)), overrides
        hydra = OmegaConf.load(trial / "hydra.yaml").hydra
        assert hydra.runtime.choices == expected.hydra.runtime.choices
        assert hydra.overrides == expected.hydra.overrides
    assert len(shapes) < len(trials)  # some trials were composed from an earlier one
