"""A study is one question: a search that continues it must ask the same one."""

import functools
import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import gone_stale, run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlp_sweep import identity

STUDY = "optuna-mnist_5k-val_acc"
FAST = ("hparams_search=optuna", "epochs=1", "hidden=8")  # hidden fixed: tiny trials


def load(root: Path) -> optuna.Study:
    return optuna.load_study(
        study_name=STUDY, storage=f"sqlite:///{root}/outputs/optuna/{STUDY}.db"
    )


@pytest.fixture(scope="module")
def _first_session(tmp_path_factory) -> tuple[Path, Path]:
    """A search of one trial (FAST), run once for the module: the folder it ran in, and a
    copy of what it left there."""
    root = tmp_path_factory.mktemp("study")
    assert run_in_process(*FAST, "hydra.sweeper.n_trials=1", cwd=root).code == 0
    kept = tmp_path_factory.mktemp("kept") / "root"
    shutil.copytree(root, kept)
    return root, kept


def after_first_session(first_session: tuple[Path, Path]) -> Path:
    """The folder where a one-trial search (FAST) ran, holding just what it left there: the
    study (whose runs' folders are absolute paths, so it stays at that path) and its trial.
    Each caller gets it afresh, as if that search had just run."""
    root, kept = first_session
    shutil.rmtree(root)
    shutil.copytree(kept, root)
    return root


@pytest.fixture
def root(_first_session) -> Path:
    """The folder of a study that one search of one trial (FAST) started."""
    return after_first_session(_first_session)


@pytest.fixture
def run_there(root: Path):
    """Call run.py's main in this process, in the folder of the study that a one-trial search
    (FAST) started."""
    return functools.partial(run_in_process, cwd=root)


def refused(result, *says: str) -> None:
    assert result.code == 2, result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: ") and all(s in line for s in says), line


def test_a_setting_under_a_searched_group_is_part_of_the_study(run_there, root):
    other = run_there(*FAST, "hydra.sweeper.n_trials=2", "model.activation=relu")
    refused(other, "model[softmax_ce].activation=sigmoid then, relu now")
    assert len(load(root).trials) == 1


@pytest.mark.parametrize(
    ("param", "says"),
    [
        ('"tag(log, interval(0.001, 0.1))"', "lr=tag(log, interval(0.01, 5.0)) then"),
        ('"interval(0.01, 5.0)"', "interval(0.01, 5.0) now"),  # linear, not log
        ('"choice(0.1, 0.5)"', "choice(0.1, 0.5) now"),
    ],
)
def test_another_search_space_is_refused_before_any_trial(run_there, root, param, says):
    other = run_there(*FAST, "hydra.sweeper.n_trials=2", f"hydra.sweeper.params.lr={param}")
    refused(other, "another search space", "hydra.sweeper.params.lr=", says)
    assert [t.state.name for t in load(root).trials] == ["COMPLETE"]


def test_another_define_by_run_space_is_refused(run_app, tmp_path):
    wide = ("hparams_search=wide", "epochs=1", "hydra.sweeper.study_name=s")
    assert run_app(*wide, "hydra.sweeper.n_trials=1").code == 0
    no_space = ("hydra.sweeper.space=null", "+hydra.sweeper.params={lr: 0.1}")
    other = run_app(*wide, "hydra.sweeper.n_trials=2", *no_space)
    refused(other, "hydra.sweeper.space=mlp_sweep.spaces.wide then, null now")


def files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_a_refused_search_prints_its_line_and_changes_no_file(run_there, root):
    before = files(root)
    other = run_there(*FAST, "hydra.sweeper.n_trials=2", "data.val_size=600")
    refused(other, "was started with other settings (data.val_size=500 then, 600 now)")
    assert "summary" not in other.out + other.err
    assert files(root) == before
    (root / f"outputs/optuna/{STUDY}.db").unlink()  # the runs stay, their study is gone
    before = files(root)
    orphaned = run_there(*FAST, "hydra.sweeper.n_trials=1")
    refused(orphaned, "holds the runs of an earlier study")
    assert files(root) == before


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("scheduler=cosine", "(scheduler=none then, cosine now)"),
        ("optimizer=adam", "(optimizer=sgd then, adam now)"),
        ("+optimizer.dampening=0.1", "optimizer.dampening=absent then, 0.1 now"),
    ],
)
def test_a_refusal_names_a_changed_config_group_by_its_choice(run_there, root, change, says):
    refused(run_there(*FAST, "hydra.sweeper.n_trials=2", change), says)


def test_a_study_keeps_its_trials_in_one_folder(run_there, root):
    other = run_there(*FAST, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=elsewhere")
    refused(other, f"keeps its trials in {root}/outputs/optuna/{STUDY}")
    assert not list(root.glob("elsewhere/**/metrics.json"))


def test_what_a_continuation_may_change(run_there, root):
    more = run_there(*FAST, "hydra.sweeper.n_trials=2", "hydra/sweeper/sampler=random", "threads=1")
    assert more.code == 0, more.err
    assert [t.state.name for t in load(root).trials] == ["COMPLETE", "COMPLETE"]


# The property: whatever sequence of sessions and kills a study goes through, every trial in
# it ran with the study's recorded settings and space, every finished trial is counted once,
# and the folder's summary agrees with the study.
SESSIONS = {
    "same": (),
    "other sampler": ("hydra/sweeper/sampler=random",),  # a continuation may change it
    "other settings": ("epochs=2",),
    "other space": ('hydra.sweeper.params.lr="tag(log, interval(0.05, 1.0))"',),
}
# A step: maybe a kill -9 of the last session (after a run ended, or while one trained),
# then a session, asking for 1 or 2 trials more.
STEPS = st.tuples(
    st.sampled_from([None, "complete", "running"]),
    st.sampled_from(sorted(SESSIONS)),
    st.integers(1, 2),
)


def leave_running(root: Path, status: str) -> None:
    """What a kill -9 leaves: a trial RUNNING in the study with a heartbeat gone stale, its
    folder written up to ``status`` (a copy of trial 0's run, renumbered)."""
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{root}/outputs/optuna/{STUDY}.db", heartbeat_interval=1, grace_period=1
    )
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trial = study.ask(fixed_distributions=study.trials[0].distributions)
    folder = root / "outputs" / "optuna" / STUDY / str(trial.number)
    run = json.loads((folder.parent / "0" / "metrics.json").read_text())
    run["trial"]["number"], run["status"] = trial.number, status
    if status == "running":
        run.update(final={}, history=[], epochs_run=0)
        run["objective"]["value"] = None
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(run))
    trial.set_user_attr("run_dir", str(folder))
    storage.record_heartbeat(trial._trial_id)
    gone_stale(root / "outputs" / "optuna" / f"{STUDY}.db", trial.number)


def check_invariant(root: Path) -> None:
    study = load(root)
    recorded = study.user_attrs
    folder = root / "outputs" / "optuna" / STUDY
    complete = {t.number for t in study.trials if t.state.name == "COMPLETE"}
    for trial in study.trials:
        if trial.state.name != "COMPLETE":
            continue
        run = json.loads((folder / str(trial.number) / "metrics.json").read_text())
        assert run["status"] == "complete" and run["trial"]["number"] == trial.number
        assert run["config"]["epochs"] == recorded["settings"]["epochs"]
        assert identity.show(trial.distributions["lr"]) == recorded["space"]["params"]["lr"]
        assert run["objective"]["value"] == trial.value
    summary = pd.read_csv(folder / "summary.csv")
    assert set(summary.loc[summary["status"] == "complete", "trial"]) == complete
    assert summary["trial"].is_unique


# The question each session asks: the sampler is not part of it.
QUESTION = {"same": "", "other sampler": "", "other settings": "epochs", "other space": "lr"}


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEPS, min_size=1, max_size=2))
def test_every_trial_of_a_study_asked_its_question_once(_first_session, steps):
    root = after_first_session(_first_session)  # each example starts from one trial
    for kill, session, more in steps:
        if kill:
            leave_running(root, kill)
        trials = load(root).trials
        done = sum(t.state.name == "COMPLETE" for t in trials)
        result = run_in_process(
            *FAST, "hydra.sweeper.grace_period=1", f"hydra.sweeper.n_trials={done + more}",
            *SESSIONS[session], cwd=root,
        )  # fmt: skip
        if QUESTION[session] == QUESTION["same"]:
            assert result.code == 0, result.err
            check_invariant(root)
        else:
            assert result.code == 2, result.err
            assert len(load(root).trials) == len(trials)  # refused before any trial


def test_a_refused_search_leaves_no_trace(run_app, tmp_path):
    refused(run_app(*FAST, "logger=mlflow", "hydra.sweeper.enqueue=[{hiden: 8}]"), "hiden")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_seed_per_trial_is_part_of_the_study_as_written(tmp_path):
    """``seed=${hydra:job.num}`` gives each trial its own seed; the study records it as
    written, so continuing it with one seed for all is another question."""
    per_trial = run_in_process(*FAST, "hydra.sweeper.n_trials=2", "seed=${hydra:job.num}",
                               cwd=tmp_path)  # fmt: skip
    assert per_trial.code == 0, per_trial.err
    study = load(tmp_path)
    assert study.user_attrs["settings"]["seed"] == "${hydra:job.num}"
    seeds = [json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())["config"]
             ["seed"] for t in study.trials]  # fmt: skip
    assert seeds == [t.number for t in study.trials] == [0, 1]
    refused(run_in_process(*FAST, "hydra.sweeper.n_trials=3", "seed=0", cwd=tmp_path),
            "seed=${hydra:job.num} then, 0 now")  # fmt: skip
