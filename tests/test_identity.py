"""A study is one question: a search that continues it must ask the same one."""

from pathlib import Path

import optuna
import pytest

STUDY = "optuna-mnist_5k-val_acc"
FAST = ("hparams_search=optuna", "epochs=1", "hidden=8")  # hidden fixed: tiny trials


def load(root: Path) -> optuna.Study:
    return optuna.load_study(
        study_name=STUDY, storage=f"sqlite:///{root}/outputs/optuna/{STUDY}.db"
    )


def refused(result, *says: str) -> None:
    assert result.code == 2, result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: ") and all(s in line for s in says), line


def test_a_setting_under_a_searched_group_is_part_of_the_study(run_app, tmp_path):
    assert run_app(*FAST, "hydra.sweeper.n_trials=1").code == 0
    other = run_app(*FAST, "hydra.sweeper.n_trials=2", "model.activation=relu")
    refused(other, "model.activation (model=", "sigmoid then, relu now")
    assert len(load(tmp_path).trials) == 1


@pytest.mark.parametrize(
    ("param", "says"),
    [
        ('"tag(log, interval(0.001, 0.1))"', "lr=tag(log, interval(0.01, 5.0)) then"),
        ('"interval(0.01, 5.0)"', "interval(0.01, 5.0) now"),  # linear, not log
        ('"choice(0.1, 0.5)"', "choice(0.1, 0.5) now"),
    ],
)
def test_another_search_space_is_refused_before_any_trial(run_app, tmp_path, param, says):
    assert run_app(*FAST, "hydra.sweeper.n_trials=1").code == 0
    other = run_app(*FAST, "hydra.sweeper.n_trials=2", f"hydra.sweeper.params.lr={param}")
    refused(other, "another search space", "hydra.sweeper.params.lr=", says)
    assert [t.state.name for t in load(tmp_path).trials] == ["COMPLETE"]


def test_another_define_by_run_space_is_refused(run_app, tmp_path):
    wide = ("hparams_search=wide", "epochs=1", "hydra.sweeper.study_name=s")
    assert run_app(*wide, "hydra.sweeper.n_trials=1").code == 0
    no_space = ("hydra.sweeper.space=null", "+hydra.sweeper.params={lr: 0.1}")
    other = run_app(*wide, "hydra.sweeper.n_trials=2", *no_space)
    refused(other, "hydra.sweeper.space=mlp_sweep.spaces.wide then, null now")


def test_a_study_keeps_its_trials_in_one_folder(run_app, tmp_path):
    assert run_app(*FAST, "hydra.sweeper.n_trials=1").code == 0
    other = run_app(*FAST, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=elsewhere")
    refused(other, f"keeps its trials in {tmp_path}/outputs/optuna/{STUDY}")
    assert not list(tmp_path.glob("elsewhere/**/metrics.json"))


def test_what_a_continuation_may_change(run_app, tmp_path):
    assert run_app(*FAST, "hydra.sweeper.n_trials=1").code == 0
    more = run_app(*FAST, "hydra.sweeper.n_trials=2", "hydra/sweeper/sampler=random", "threads=1")
    assert more.code == 0, more.err
    assert [t.state.name for t in load(tmp_path).trials] == ["COMPLETE", "COMPLETE"]
