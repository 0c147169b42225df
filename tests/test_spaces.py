"""Define-by-run search spaces: the shipped `wide` space and a user's own, run in-process."""

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.storages import RetryFailedTrialCallback

from mlp_sweep.spaces import Space, to_overrides

# A user's space: the learning-rate range depends on the optimizer, as Optuna users write it.
USER_SPACE = """
LR = {"sgd": (0.05, 0.5), "adam": (1e-4, 1e-2)}


def lr_by_optimizer(cfg, trial):
    optimizer = trial.suggest_categorical("optimizer", sorted(LR))
    low, high = LR[optimizer]
    lr = trial.suggest_float(f"{optimizer}_lr", low, high, log=True)
    return {"optimizer": optimizer, "lr": lr, "hidden": 32}


def draws_a_depth(cfg, trial):  # returns nothing: its suggestions would be the overrides
    trial.suggest_int("depth", 1, 3)


def breaks(cfg, trial):
    raise RuntimeError("no space today")


def betas_of_adam(cfg, trial):  # keys only the drawn choice has
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    if optimizer == "sgd":
        return {"optimizer": optimizer}
    return {"optimizer": optimizer, "optimizer.betas": [trial.suggest_float("b1", 0.8, 0.95), 0.99]}


def betas_of_sgd(cfg, trial):
    return {"optimizer": "sgd", "optimizer.betas": [trial.suggest_float("b1", 0.8, 0.95), 0.99]}
"""
USER_LR = {"sgd": (0.05, 0.5), "adam": (1e-4, 1e-2)}
WIDE_LR = {"sgd": (0.005, 0.5), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2)}


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """my_spaces.py in the run's folder, importable as a user's module is from theirs."""
    (tmp_path / "my_spaces.py").write_text(textwrap.dedent(USER_SPACE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_spaces", raising=False)  # another test's, imported
    return "my_spaces"


def trial_runs(root: Path, study: str) -> list[dict]:
    folder = root / "outputs" / "optuna" / study
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/metrics.json"))]


@pytest.mark.parametrize("trials", [4, pytest.param(8, marks=pytest.mark.slow)])
def test_a_user_space_with_optimizer_dependent_lr_ranges_runs_trials_that_obey_it(
    run_app, tmp_path, user_module, trials
):
    result = run_app(
        "hparams_search=wide",
        f"hydra.sweeper.space={user_module}.lr_by_optimizer",
        f"hydra.sweeper.trusted_spaces=[{user_module}.*]",
        f"hydra.sweeper.n_trials={trials}",
        "epochs=1",
    )
    assert result.code == 0, result.err
    runs = trial_runs(tmp_path, "wide-mnist_5k-val_acc")
    assert len(runs) == trials and all(r["status"] == "complete" for r in runs)
    for run in runs:
        low, high = USER_LR[run["choices"]["optimizer"]]
        assert low <= run["params"]["lr"] <= high
        assert run["params"]["hidden"] == [32]
    assert {r["choices"]["optimizer"] for r in runs} == {"sgd", "adam"}


def test_a_space_may_set_keys_that_only_its_drawn_config_group_choice_has(
    run_app, tmp_path, user_module
):
    result = run_app(
        "hparams_search=wide", f"hydra.sweeper.space={user_module}.betas_of_adam",
        f"hydra.sweeper.trusted_spaces=[{user_module}.*]", "hydra.sweeper.n_trials=4", "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "in memory" not in result.out + result.err  # the study that checks the space
    runs = trial_runs(tmp_path, "wide-mnist_5k-val_acc")
    adam = [r for r in runs if r["choices"]["optimizer"] == "adam"]
    assert len(runs) == 4 and adam
    assert all(r["config"]["optimizer"]["betas"][1] == 0.99 for r in adam)


@pytest.mark.slow
def test_the_wide_preset_searches_depths_optimizers_and_their_own_ranges(run_app, tmp_path):
    result = run_app("hparams_search=wide", "hydra.sweeper.n_trials=8", "epochs=1")
    assert result.code == 0, result.err
    runs = trial_runs(tmp_path, "wide-mnist_5k-val_acc")
    assert len(runs) == 8 and all(r["status"] == "complete" for r in runs)
    for run in runs:
        params, optimizer = run["params"], run["choices"]["optimizer"]
        low, high = WIDE_LR[optimizer]
        assert low <= params["lr"] <= high
        assert 1 <= len(params["hidden"]) <= 3 and all(32 <= w <= 512 for w in params["hidden"])
        assert params["batch_size"] in (64, 128, 256)
        if optimizer != "sgd" or params["optimizer.momentum"] == 0:
            assert not params.get("optimizer.nesterov")
    assert len({len(r["params"]["hidden"]) for r in runs}) >= 2
    assert len({r["choices"]["optimizer"] for r in runs}) >= 2
    summary = pd.read_csv(tmp_path / "outputs" / "optuna" / "wide-mnist_5k-val_acc" / "summary.csv")
    assert summary["depth"].tolist() == [len(r["params"]["hidden"]) for r in runs]
    assert all(h.startswith("[") and h.endswith("]") for h in summary["hidden"])


def test_a_resumed_space_search_continues_to_its_total_without_replaying(run_app, tmp_path):
    for total in (1, 2):
        result = run_app("hparams_search=wide", f"hydra.sweeper.n_trials={total}", "epochs=1")
        assert result.code == 0, result.err
    url = f"sqlite:///{tmp_path}/outputs/optuna/wide-mnist_5k-val_acc.db"
    trials = optuna.load_study(study_name="wide-mnist_5k-val_acc", storage=url).trials
    assert [t.number for t in trials] == [0, 1]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 2


def test_a_retried_space_trial_runs_again_with_the_same_overrides(run_app, tmp_path):
    """A trial queued again by Optuna's retry (as a stale or interrupted trial is) holds the
    space's own parameters (a depth, a width per layer): its job is the space's overrides
    again, not those parameters as keys of the config."""
    assert run_app("hparams_search=wide", "hydra.sweeper.n_trials=1", "epochs=1").code == 0
    url = f"sqlite:///{tmp_path}/outputs/optuna/wide-mnist_5k-val_acc.db"
    study = optuna.load_study(study_name="wide-mnist_5k-val_acc", storage=url)
    RetryFailedTrialCallback()(study, study.trials[0])  # queues a copy of it, params and all
    result = run_app("hparams_search=wide", "hydra.sweeper.n_trials=2", "epochs=1")
    assert result.code == 0, result.err
    first, again = trial_runs(tmp_path, "wide-mnist_5k-val_acc")
    assert again["status"] == "complete"
    assert {**again["params"], "trial": 0} == first["params"] and again["params"]["trial"] == 1


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_samplers_without_a_model_of_the_space_draw_from_it_too(run_app, tmp_path, sampler):
    result = run_app(
        "hparams_search=wide", f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.n_trials=1",
        "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    (run,) = trial_runs(tmp_path, "wide-mnist_5k-val_acc")
    assert run["status"] == "complete" and 1 <= len(run["params"]["hidden"]) <= 3


def test_hydra_optuna_sweepers_custom_search_space_is_read_as_the_space(
    run_app, tmp_path, user_module
):
    result = run_app(
        "hparams_search=wide", "hydra.sweeper.space=null",
        f"hydra.sweeper.custom_search_space={user_module}.lr_by_optimizer",
        f"hydra.sweeper.trusted_spaces=[{user_module}.lr_by_optimizer]",
        "hydra.sweeper.n_trials=1", "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    (run,) = trial_runs(tmp_path, "wide-mnist_5k-val_acc")
    assert run["params"]["hidden"] == [32]  # drawn by the user's space, not the wide one


def test_a_requeued_trial_gets_the_same_overrides_again():
    space = Space("mlp_sweep.spaces.wide")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    first = study.ask()
    drawn = space(None, first)
    study.enqueue_trial(first.params)  # what a stale trial's retry does
    assert space(None, study.ask()) == drawn


def test_a_spaces_numpy_values_are_overrides_of_their_numbers():
    """np.round(lr, 4) and a width taken from a numpy array, as a space may return them."""
    drawn = {"lr": np.round(np.float64(0.064712), 4), "hidden": [np.int64(32), 16]}
    assert to_overrides(drawn) == ["lr=0.0647", "hidden=[32,16]"]


def test_a_space_that_returns_nothing_overrides_what_it_suggested(user_module):
    space = Space(f"{user_module}.draws_a_depth", trusted=[f"{user_module}.*"])
    trial = optuna.create_study().ask()
    assert space(None, trial) == {"depth": trial.params["depth"]}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["hydra.sweeper.space=my_spaces.lr_by_optimizer"], "is not trusted"),
        (["hydra.sweeper.space=mlp_sweep.spaces.nowhere"], "cannot be loaded"),
        (
            ["hydra.sweeper.space=my_spaces.breaks", "hydra.sweeper.trusted_spaces=[my_spaces.*]"],
            "raised RuntimeError: no space today",
        ),
        (
            [
                "hydra.sweeper.space=my_spaces.draws_a_depth",
                "hydra.sweeper.trusted_spaces=[my_spaces.breaks,my_spaces.draws_a_depth]",
            ],
            "sets 'depth', which is not a config key",
        ),
        (
            [
                "hydra.sweeper.space=my_spaces.betas_of_sgd",
                "hydra.sweeper.trusted_spaces=[my_spaces.*]",
            ],
            "which cannot be composed: Could not override 'optimizer.betas'",
        ),
        (["optimizer=sgd"], "sets optimizer, which is fixed to optimizer=sgd"),
        (["hparams_search=optuna", "hydra.sweeper.space=mlp_sweep.spaces.wide"], "params searches"),
        (["hydra/sweeper/sampler=grid"], "sampler=grid needs the whole search space up front"),
        (
            ["hydra.sweeper.enqueue=[{bogus: 1}]"],
            "enqueue: bogus is not a parameter that hydra.sweeper.space=",
        ),
        (["hydra.sweeper.enqueue=[{optimizer: rmsprop}]"], "enqueue: optimizer='rmsprop' (a "),
    ],
)
def test_a_space_that_cannot_run_fails_with_one_line_before_any_trial(
    run_app, tmp_path, user_module, args, says
):
    preset = [] if args[0].startswith("hparams_search") else ["hparams_search=wide"]
    result = run_app(*preset, *args, "epochs=1")
    assert result.code == 2, result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: hydra") and says in last
    assert not list(tmp_path.rglob("metrics.json"))
    assert not list(tmp_path.rglob("*.db"))  # no study was started either


def test_the_wide_space_trades_accuracy_against_size_with_the_pruner_off(run_app, tmp_path):
    result = run_app(
        "hparams_search=wide", "objective=[val_acc,n_params]", "hydra/sweeper/pruner=none",
        "hydra.sweeper.n_trials=1", "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    (run,) = trial_runs(tmp_path, "wide-mnist_5k-val_acc+n_params")
    assert run["objective"]["value"][1] == run["final"]["n_params"]
