"""`python run.py hparams_search=...`: Optuna searches end to end, run in-process."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from conftest import REPO, gone_stale, run_in_process

from mlp_sweep.records import STUDY_PLOTS
from mlp_sweep.study import open_rdb

STUDY = "optuna-mnist_5k-val_acc"


def load(root: Path, name: str = STUDY) -> optuna.Study:
    url = f"sqlite:///{root}/outputs/optuna/{name}.db"
    return optuna.load_study(study_name=name, storage=url)


def metrics(root: Path, trial: int, name: str = STUDY) -> dict:
    return json.loads(
        (root / "outputs" / "optuna" / name / str(trial) / "metrics.json").read_text()
    )


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.trials]


def test_a_search_runs_without_m_and_resumes_to_its_total(run_app, tmp_path):
    first = run_app("hparams_search=optuna", "hydra.sweeper.n_trials=3", "epochs=1")
    assert first.code == 0, first.err
    study = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 3
    folder = tmp_path / "outputs" / "optuna" / STUDY
    assert len(pd.read_csv(folder / "summary.csv")) == 3
    assert all((folder / name).is_file() for name in STUDY_PLOTS)
    assert "Best trial: #" in first.out

    again = run_app("hparams_search=optuna", "hydra.sweeper.n_trials=5", "epochs=1")
    assert again.code == 0, again.err
    study = load(tmp_path)
    assert [t.number for t in study.trials] == list(range(5))  # 5 in all, not 3 + 5
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == 5  # the resumed session did not replay the first one's draws
    summary = pd.read_csv(folder / "summary.csv")
    assert sorted(summary["trial"]) == list(range(5))
    assert sorted(p.name for p in folder.iterdir() if p.name.isdigit()) == [
        str(i) for i in range(5)
    ]
    for trial in study.trials:  # each folder holds the trial the study recorded
        assert metrics(tmp_path, trial.number)["objective"]["value"] == trial.value


# A pruned search of two trials: a strong one, then one the median pruner stops at once.
STRONG_THEN_WEAK = (
    "hparams_search=optuna_pruned",
    "hydra.sweeper.n_trials=2",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=0",
    "hydra.sweeper.enqueue=["
    "{lr: 0.5, model: softmax_ce, hidden: 100, init_std: 0.1, batch_size: 32},"
    "{lr: 0.001, model: sigmoid_mse, hidden: 25, init_std: 0.1, batch_size: 256}]",
)


def test_a_pruned_trial_stops_early_and_keeps_its_partial_metrics(run_app, tmp_path):
    result = run_app(
        *STRONG_THEN_WEAK,
        "epochs=4",
    )
    assert result.code == 0, result.err
    study = load(tmp_path, "optuna_pruned-mnist_5k-val_acc")
    assert states(study) == ["COMPLETE", "PRUNED"]
    pruned = study.trials[1]
    run = metrics(tmp_path, 1, "optuna_pruned-mnist_5k-val_acc")
    assert run["status"] == "pruned" and run["epochs_run"] < 4
    assert pruned.value == run["history"][-1]["val_acc"] == run["objective"]["value"]
    assert pruned.intermediate_values == {e["epoch"]: e["val_acc"] for e in run["history"]}


def test_trials_report_to_the_study_file_there_now_when_an_earlier_one_was_replaced(
    run_app, tmp_path
):
    """A process keeps the storage its trials report to for its next trial; a study file
    removed and made again under the same URL (the same search run afresh in one process,
    as a notebook or a test session does) gets every report, not the file it replaced."""
    search = ["hparams_search=optuna_pruned", "hydra.sweeper.n_trials=2", "epochs=2"]
    assert run_app(*search).code == 0
    shutil.rmtree(tmp_path / "outputs")
    again = run_app(*search)
    assert again.code == 0, again.err
    study = load(tmp_path, "optuna_pruned-mnist_5k-val_acc")
    for trial in study.trials:
        run = metrics(tmp_path, trial.number, "optuna_pruned-mnist_5k-val_acc")
        assert trial.intermediate_values == {e["epoch"]: e["val_acc"] for e in run["history"]}


def test_a_diverging_trial_fails_and_the_search_goes_on(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.enqueue=[{lr: 1e38, model: softmax_ce}]",
        "epochs=2",
    )
    assert result.code == 0, result.err
    study = load(tmp_path)
    assert states(study) == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "became nan" in study.trials[0].user_attrs["error"]
    run = metrics(tmp_path, 0)
    assert run["status"] == "failed" and run["epochs_run"] == 1 and len(run["history"]) == 1
    # The trial's line says why, once: the search's own warning is not printed after it.
    said = [line for line in result.out.splitlines() if "trial 0" in line and "nan" in line]
    assert len(said) == 1 and said[0].startswith("trial 0  lr=1e+38"), said


def test_too_many_failures_stop_the_search_with_its_summary(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.max_failure_rate=0.25",
        "hydra.sweeper.enqueue=[{lr: 1e38, model: softmax_ce}, {lr: 2e38, model: softmax_ce}]",
        "epochs=1",
    )
    assert result.code == 1
    assert result.err.strip().splitlines()[-1].startswith("error: 2 trials of study")
    assert states(load(tmp_path)) == ["FAIL", "FAIL"]
    assert len(pd.read_csv(tmp_path / "outputs" / "optuna" / STUDY / "summary.csv")) == 2


def test_trials_of_one_batch_given_one_folder_by_the_subdir_run_one_of_them(run_app, tmp_path):
    """hydra.sweep.subdir=h${hidden}: two trials of a stacked batch drew the same width. The
    first runs; the second fails before running, naming the folder (both trained into it and
    the study counted both, with the folder holding the second's run)."""
    result = run_app(
        "hparams_search=optuna", "hydra/launcher=stacked", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2", "hydra.sweep.subdir=h${hidden}", "epochs=1",
        "hydra.sweeper.enqueue=[{hidden: 25, lr: 0.1}, {hidden: 25, lr: 0.2}]",
    )  # fmt: skip
    assert result.code == 0, result.err
    study = load(tmp_path)
    assert states(study) == ["COMPLETE", "FAIL"]
    assert "is trial 0's too: hydra.sweep.subdir=h${hidden}" in study.trials[1].user_attrs["error"]
    run = json.loads((tmp_path / "outputs" / "optuna" / STUDY / "h25" / "metrics.json").read_text())
    assert run["trial"]["number"] == 0 and run["objective"]["value"] == study.trials[0].value


def test_two_joblib_workers_share_the_cores_and_never_reuse_a_trial(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_trials=4", "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    study = load(tmp_path)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert states(study) == ["COMPLETE"] * 4
    runs = [metrics(tmp_path, n) for n in range(4)]
    assert sorted(r["trial"]["number"] for r in runs) == [0, 1, 2, 3]
    assert all(r["threads"] == max(1, os.cpu_count() // 2) for r in runs)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4


def test_the_direction_follows_the_objective(run_app, tmp_path):
    assert (
        run_app(
            "hparams_search=optuna",
            "objective=val_loss",
            "model=softmax_ce",  # the losses of one variant: comparable
            "hydra.sweeper.n_trials=1",
            "epochs=1",
        ).code
        == 0
    )
    study = load(tmp_path, "optuna-mnist_5k-val_loss")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE


def test_a_sqlite_url_naming_its_driver_holds_the_study_in_its_file(run_app, tmp_path):
    url = f"sqlite+pysqlite:///{tmp_path}/new/s.db"  # a folder that does not exist yet
    result = run_app(
        "hparams_search=optuna", f"hydra.sweeper.storage={url}", "hydra.sweeper.study_name=s",
        "hydra.sweeper.n_trials=1", "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/new/s.db").trials
    assert [t.state.name for t in trials] == ["COMPLETE"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["hydra.sweeper.direction=maximize", "objective=val_loss"],
            "contradicts objective=val_loss",
        ),
        (["hydra.sweeper.storage=postgresql://nobody@127.0.0.1:1/none"], "hydra.sweeper.storage="),
        (["hydra.sweeper.storage=foo://x"], "hydra.sweeper.storage='foo://x' is invalid: give a"),
        (
            ["hydra.sweeper.storage=postgres://h/db"],
            "or null to keep the study in memory; the scheme is spelled postgresql://",
        ),
        (["hydra.sweeper.storage=SQLITE:///s.db"], "the scheme is spelled sqlite://"),
        (["hydra.sweeper.study_name=null"], "hydra.sweeper.study_name=null is invalid"),
        (["hydra.sweeper.storage=sqlite:///:memory:"], "is lost between trials"),
        (["hydra.sweeper.storage='sqlite:///file:m?mode=memory&uri=true'"], "lost between trials"),
        (["hydra.sweeper.storage='sqlite:///file:m?mode=memory&uri=1'"], "lost between trials"),
        (["hydra.sweeper.storage=sqlite+pysqlite:///:memory:"], "is lost between trials"),
        (["hydra.sweeper.study_name=a/b"], "hydra.sweeper.study_name='a/b' is invalid"),
        (["hydra.sweeper.storage=sqlite://"], "storage='sqlite://' is invalid"),
        (["hydra.sweeper.max_failure_rate=2"], "max_failure_rate=2.0 is invalid"),
        (["objective=val_loss"], "cannot rank runs of both sigmoid_mse and softmax_ce"),
        (["hydra/sweeper/sampler=grid"], "sampler=grid needs a finite set of values"),
        (["optimizer.momentum=-1"], "optimizer.momentum=-1 is invalid: torch.optim.SGD cannot"),
    ],
)
def test_bad_search_settings_fail_with_one_line(run_app, tmp_path, args, says):
    result = run_app("hparams_search=optuna", *args, "epochs=1")
    assert result.code == 2
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: ") and says in last
    assert not list(tmp_path.rglob("metrics.json"))


def test_other_samplers_are_one_override_away(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.n_trials=2",
        "epochs=1",
    )
    assert result.code == 0, result.err
    assert "sampler RandomSampler" in result.err + result.out
    assert states(load(tmp_path)) == ["COMPLETE", "COMPLETE"]


def test_a_study_refuses_to_continue_with_other_settings(run_app, tmp_path):
    assert run_app("hparams_search=optuna", "hydra.sweeper.n_trials=1", "epochs=1").code == 0
    other = run_app("hparams_search=optuna", "hydra.sweeper.n_trials=2", "epochs=2")
    assert other.code == 2
    (line,) = other.err.strip().splitlines()
    assert "was started with other settings (epochs=1 then, 2 now)" in line
    assert "hydra.sweeper.study_name=" in line
    assert len(load(tmp_path).trials) == 1  # nothing ran
    renamed = run_app(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        "epochs=2",
        "hydra.sweeper.study_name=longer",
    )
    assert renamed.code == 0, renamed.err


def test_a_trial_is_never_pruned_after_its_last_epoch(run_app, tmp_path):
    result = run_app(
        *STRONG_THEN_WEAK,
        "epochs=1",  # the weak trial's only epoch is its last: pruning it would save nothing
    )
    assert result.code == 0, result.err
    assert states(load(tmp_path, "optuna_pruned-mnist_5k-val_acc")) == ["COMPLETE", "COMPLETE"]
    run = metrics(tmp_path, 1, "optuna_pruned-mnist_5k-val_acc")
    assert run["status"] == "complete" and run["final"]
    assert (tmp_path / "outputs/optuna/optuna_pruned-mnist_5k-val_acc/1/model.pt").is_file()


def test_the_failure_budget_counts_the_failures_of_earlier_sessions(run_app, tmp_path):
    search = ["hparams_search=optuna", "hydra.sweeper.max_failure_rate=0.25", "epochs=1"]
    first = run_app(
        *search, "hydra.sweeper.n_trials=4", "hydra.sweeper.enqueue=[{lr: 1e38, model: softmax_ce}]"
    )
    assert first.code == 0, first.err  # 1 failure of 4 trials: within the budget
    second = run_app(
        *search,
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.enqueue=[{lr: 2e38, model: softmax_ce}, {lr: 3e38, model: softmax_ce}]",
    )
    assert second.code == 1  # 3 failures of 8 trials in all: over 0.25 of 8
    last = second.err.strip().splitlines()[-1]
    assert last.startswith("error: 3 trials of study")
    assert "the errors are in" in last and last.count("summary.md") == 1


def test_a_search_whose_trials_fail_before_a_run_folder_says_why_in_its_last_line_each_time(
    run_app, tmp_path
):
    """A trial refused by the job's own checks leaves no run folder, so no summary: the
    line that stops the search says what failed instead of naming a file never written."""
    arguments = [
        "hparams_search=optuna", "hidden=interval(10.5,20.5)", "hydra.sweeper.n_trials=2",
        "epochs=1",
    ]  # fmt: skip
    result = run_app(*arguments)
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: 2 trials of study optuna-mnist_5k-val_acc failed")
    assert "the last: hidden=" in last and "must be a positive integer" in last
    assert "summary.md" not in last
    assert not (tmp_path / "outputs/optuna/optuna-mnist_5k-val_acc/summary.md").exists()
    assert result.err.count("nothing to summarise") <= 1
    again = run_app(*arguments)  # the study has its total: no trial left to run
    assert again.code == 1 and again.err.strip().splitlines()[-1] == last


def test_a_trial_whose_values_cannot_be_composed_fails_and_the_search_goes_on(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna", "hydra.sweeper.n_trials=2", "epochs=1",
        "hydra.sweeper.params.batch_size='choice(32,abc)'",
        "hydra.sweeper.enqueue=[{batch_size: 32}, {batch_size: abc}]",
    )  # fmt: skip
    assert result.code == 0, result.err  # 1 failure of 2 trials: within the budget
    trials = load(tmp_path).trials
    assert states(load(tmp_path)) == ["COMPLETE", "FAIL"]
    assert "batch_size=abc" in trials[1].user_attrs["error"]
    assert "could not be converted to Integer" in trials[1].user_attrs["error"]  # the reason
    assert not (tmp_path / "outputs/optuna/optuna-mnist_5k-val_acc/1").exists()


def test_searching_a_choice_that_the_study_name_reads_is_refused_before_the_study(
    run_app, tmp_path
):
    """The default study name reads data.name: a trial drawing another data set would report
    to another study, in another folder. Refused, unless the study's name does not read it."""
    search = [
        "hparams_search=optuna", "+hydra.sweeper.params.data='choice(mnist_5k,digits)'",
        "hydra.sweeper.n_trials=2", "epochs=1",
    ]  # fmt: skip
    result = run_app(*search)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: data=digits cannot be searched: it changes hydra.sweeper.study_name of a trial "
        "to optuna-digits-val_acc from this search's optuna-mnist_5k-val_acc; search one data, "
        "or set hydra.sweeper.study_name to a value that does not read it"
    ]
    assert not (tmp_path / "outputs").exists()
    named = run_app(*search, "hydra.sweeper.study_name=both")
    assert named.code == 0, named.err
    assert states(load(tmp_path, "both")) == ["COMPLETE", "COMPLETE"]
    assert sorted(p.name for p in (tmp_path / "outputs/optuna").iterdir()) == ["both", "both.db"]


def test_a_searched_choice_that_does_not_exist_is_refused_before_the_study(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna", "hydra.sweeper.params.model='choice(softmax_ce,nope)'", "epochs=1"
    )
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: model=nope is invalid: allowed: sigmoid_mse, softmax_ce"
    ]
    assert not (tmp_path / "outputs").exists()  # no study database either


def test_a_trial_whose_values_move_it_out_of_the_search_fails_before_it_runs(run_app, tmp_path):
    """A folder that reads a searched value (not a config group, checked up front) would put
    each trial somewhere else: such a trial fails, saying so, and runs nowhere."""
    result = run_app(
        "hparams_search=optuna", "hydra.sweeper.n_trials=2", "epochs=1",
        "hydra.sweep.dir=sw/h${hidden}", "hydra.sweeper.max_failure_rate=1",
        "hydra.sweeper.enqueue=[{hidden: 50}, {hidden: 100}]",
    )  # fmt: skip
    assert result.code == 0, result.err
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[0].user_attrs["error"] == (
        "its values change hydra.sweep.dir to sw/h50 from this search's sw/h100; search "
        "values that leave it alone, or set hydra.sweep.dir to a value that does not read them"
    )
    assert sorted(p.name for p in (tmp_path / "sw").iterdir()) == ["h100"]


def test_a_study_named_by_the_time_holds_every_trial_of_its_search(run_app, tmp_path):
    """${now:...} is resolved once for the search: its trials share its name and folder."""
    result = run_app(
        "hparams_search=optuna", "hydra.sweeper.n_trials=2", "epochs=1",
        "hydra.sweep.dir=sw/${now:%H-%M-%S.%f}", "hydra.sweeper.study_name=s${now:%S%f}",
    )  # fmt: skip
    assert result.code == 0, result.err
    (database,) = (tmp_path / "outputs" / "optuna").glob("*.db")
    (folder,) = (tmp_path / "sw").iterdir()
    study = optuna.load_study(study_name=database.stem, storage=f"sqlite:///{database}")
    assert states(study) == ["COMPLETE", "COMPLETE"]
    assert (folder / "0" / "metrics.json").is_file() and (folder / "1" / "metrics.json").is_file()


def test_an_in_memory_study_names_the_best_trials_own_folder(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna", "hydra.sweeper.storage=null", "hydra.sweeper.n_trials=2",
        "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    best = next(line for line in result.out.splitlines() if line.startswith("Best trial"))
    folder = Path(best.rsplit(" in ", 1)[1])
    assert folder.name.isdigit() and (folder / "metrics.json").is_file()

    again = run_app(
        "hparams_search=optuna", "hydra.sweeper.storage=null", "hydra.sweeper.n_trials=2",
        "epochs=1",
    )  # fmt: skip
    assert again.code == 2  # a new study would write over the trial folders of the last one
    assert "holds the runs of an earlier study" in again.err


# A grid of four points; the other parameters fixed.
GRID = (
    "hparams_search=optuna",
    "epochs=1",
    "hydra/sweeper/sampler=grid",
    'hydra.sweeper.params.lr="choice(0.1,0.5)"',
    'hydra.sweeper.params.hidden="choice(10,20)"',
    'hydra.sweeper.params.init_std="choice(0.1)"',
    'hydra.sweeper.params.batch_size="choice(100)"',
    'hydra.sweeper.params.model="choice(softmax_ce)"',
)


def test_a_grid_search_runs_each_point_once_and_ends_with_its_report(run_app, tmp_path):
    first = run_app(*GRID, "hydra.sweeper.n_trials=3")
    assert first.code == 0, first.err
    again = run_app(*GRID, "hydra.sweeper.n_trials=20")
    assert again.code == 0, again.err
    assert "Best trial: #" in again.out
    study = load(tmp_path)
    points = sorted((t.params["lr"], t.params["hidden"]) for t in study.trials)
    assert points == [(0.1, 10), (0.1, 20), (0.5, 10), (0.5, 20)]
    assert states(study) == ["COMPLETE"] * 4
    assert all((tmp_path / "outputs/optuna" / STUDY / name).is_file() for name in STUDY_PLOTS)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is invalid: must be"),
        (["hydra.sweeper.n_trials=-3"], "hydra.sweeper.n_trials=-3 is invalid"),
        (["hydra.sweeper.enqueue=[{hiden: 7}]"], "enqueue: hiden is not a searched parameter"),
        (["hydra.sweeper.enqueue=[{hidden: 7}]"], "enqueue: hidden=7 is invalid: allowed: 25,"),
        (['hydra.sweeper.enqueue=[{hidden: "100"}]'], "hidden='100' (a string) is invalid"),
        (["hydra.sweeper.enqueue=[{lr: abc}]"], "enqueue: lr='abc' (a string) is invalid: allowed"),
        (["hydra.sweeper.enqueue=[{lr: null}]"], "enqueue: lr=None is invalid: allowed: a number"),
        (["hydra.sweeper.enqueue=[{lr: [0.1]}]"], "enqueue: lr=[0.1] is invalid: allowed"),
        (["hydra.sweeper.enqueue=[5]"], "hydra.sweeper.enqueue[0]=5 is invalid: each entry"),
        (
            [*GRID[2:], "hydra.sweeper.enqueue=[{lr: 0.1, hidden: 20}]"],
            "sampler=grid runs every point of its grid once: drop hydra.sweeper.enqueue",
        ),
        (
            ["hydra/sweeper/pruner=hyperband", "hydra.sweeper.pruner.max_resource=0"],
            "hydra/sweeper/pruner cannot be built with these arguments: ",
        ),
        (
            ["hydra/sweeper/pruner=successive_halving", "hydra.sweeper.pruner.reduction_factor=1"],
            "hydra/sweeper/pruner cannot be built with these arguments: ",
        ),
        (
            ["hydra/sweeper/sampler=random", "+hydra.sweeper.sampler.nope=1"],
            "hydra/sweeper/sampler cannot be built with these arguments: ",
        ),
    ],
)
def test_search_arguments_are_checked_before_the_first_trial(run_app, tmp_path, args, says):
    result = run_app("hparams_search=optuna", *args, "epochs=1")
    assert result.code == 2, result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: ") and says in line, line
    assert not list(tmp_path.rglob("metrics.json"))
    assert not (tmp_path / "outputs/optuna" / STUDY / "optuna_history.png").exists()
    assert not list(tmp_path.rglob("*.db"))  # no study was started either


def test_the_cmaes_sampler_runs(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna", "hydra/sweeper/sampler=cmaes", "hydra.sweeper.n_trials=3",
        "epochs=1", "hidden=8", "model=softmax_ce", "batch_size=100",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert states(load(tmp_path)) == ["COMPLETE"] * 3


def kill_after(root: Path, trial: int, status: str = "complete") -> None:
    """Leave ``trial`` as a search killed just after its run wrote ``status`` leaves it:
    RUNNING in the study, with a heartbeat that goes stale, its folder written (a copy of
    trial 0's run, renumbered)."""
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{root}/outputs/optuna/{STUDY}.db", heartbeat_interval=1, grace_period=1
    )
    study = optuna.load_study(study_name=STUDY, storage=storage)
    done = study.trials[0]
    running = study.ask(fixed_distributions=done.distributions)
    folder = root / "outputs" / "optuna" / STUDY
    run = json.loads((folder / "0" / "metrics.json").read_text())
    run["trial"]["number"] = running.number
    run["status"] = status
    (folder / str(running.number)).mkdir()
    (folder / str(running.number) / "metrics.json").write_text(json.dumps(run))
    running.set_user_attr("run_dir", str(folder / str(running.number)))
    storage.record_heartbeat(running._trial_id)


# A search of tiny trials (hidden fixed), and a module fixture that runs its first session.
SMALL = ("hparams_search=optuna", "epochs=1", "hidden=8")


# While another sweep's trial runs, a sweep looks at the study again every heartbeat (at most
# every 5 s): every second here, so that a trial's going stale is seen within a second.
LOOKS_EVERY_SECOND = ("hydra.sweeper.heartbeat_interval=1",)


@pytest.fixture(scope="module")
def _first_session(tmp_path_factory) -> tuple[Path, Path]:
    """A search of one trial (SMALL), run once for the module: its folder, and a copy of what
    it left there."""
    root = tmp_path_factory.mktemp("study")
    assert run_in_process(*SMALL, "hydra.sweeper.n_trials=1", cwd=root).code == 0
    kept = tmp_path_factory.mktemp("kept") / "root"
    shutil.copytree(root, kept)
    return root, kept


@pytest.fixture
def after_one_trial(_first_session) -> Path:
    """The folder where a one-trial search (SMALL) ran, holding just what it left there,
    afresh for each test; at that path, since the study records its runs' folders as
    absolute paths."""
    root, kept = _first_session
    shutil.rmtree(root)
    shutil.copytree(kept, root)
    return root


def test_a_trial_killed_after_its_run_ended_is_told_from_its_folder(after_one_trial):
    root = after_one_trial
    kill_after(root, 1)
    again = run_in_process(*SMALL, *LOOKS_EVERY_SECOND, "hydra.sweeper.grace_period=1",
        "hydra.sweeper.n_trials=2", cwd=root,
    )  # fmt: skip
    assert again.code == 0, again.err
    study = load(root)
    assert states(study) == ["COMPLETE", "COMPLETE"]  # not retrained as a third trial
    assert study.trials[1].value == metrics(root, 1)["objective"]["value"]
    summary = pd.read_csv(root / "outputs" / "optuna" / STUDY / "summary.csv")
    assert sorted(summary["trial"]) == [0, 1]


def test_a_running_trial_of_a_live_sweep_is_left_to_that_sweep(after_one_trial):
    """Another sweep on the study has written its trial's end and not told the study yet
    (its heartbeat is fresh): telling it from its folder would make that sweep's own tell
    fail. It is told from its folder only once its heartbeat goes stale."""
    root = after_one_trial
    kill_after(root, 1)  # the other sweep's trial: RUNNING, its folder complete
    url = f"sqlite:///{root}/outputs/optuna/{STUDY}.db"
    storage = open_rdb(url, heartbeat_interval=1, grace_period=2)
    other = optuna.load_study(study_name=STUDY, storage=storage)
    errors = []

    def other_sweep() -> None:  # alive for 3 s, then tells its trial
        for _ in range(6):
            storage.record_heartbeat(other.trials[1]._trial_id)
            time.sleep(0.5)
        try:
            other.tell(1, metrics(root, 1)["objective"]["value"])
        except Exception as err:
            errors.append(err)

    beating = threading.Thread(target=other_sweep)
    beating.start()
    again = run_in_process(*SMALL, *LOOKS_EVERY_SECOND, "hydra.sweeper.grace_period=2",
        "hydra.sweeper.n_trials=2", cwd=root,
    )  # fmt: skip
    beating.join()
    assert again.code == 0, again.err
    assert errors == []
    assert states(load(root)) == ["COMPLETE", "COMPLETE"]


def test_ctrl_c_in_a_stacked_search_keeps_the_trials_that_finished(tmp_path):
    """Two groups of different widths train one after the other in one launch; Ctrl-C once
    the first has finished: its trials stay COMPLETE, only the others go back to the queue."""
    search = [
        sys.executable, str(REPO / "run.py"), "hparams_search=optuna", "epochs=3",
        "hydra/launcher=stacked", "hydra.launcher.max_members=6", "hydra.sweeper.n_trials=4",
        "hydra.sweeper.enqueue=[{hidden: 25}, {hidden: 25}, {hidden: 400}, {hidden: 400}]",
        "data=mnist_5k", "batch_size=32",
    ]  # fmt: skip
    proc = subprocess.Popen(search, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = tmp_path / "outputs" / "optuna" / STUDY
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = [p for p in folder.glob("*/metrics.json") if '"status": "complete"' in p.read_text()]
        if done:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert done, "no group finished before the search ended"
    study = load(tmp_path)
    finished = {int(p.parent.name) for p in done}
    for trial in study.trials[:4]:
        if trial.number in finished:
            assert trial.state.name == "COMPLETE"
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert len(waiting) == sum(t.state.name == "FAIL" for t in study.trials[:4])
    assert len(waiting) < 4


def test_a_stale_trials_tracker_record_ends_failed(run_app, tmp_path):
    search = (
        "hparams_search=optuna", "epochs=1", "hidden=8", "hydra.sweeper.grace_period=1",
        "logger=[csv,mlflow]",
    )  # fmt: skip
    assert run_app(*search, "hydra.sweeper.n_trials=1").code == 0
    kill_after(tmp_path, 1, status="running")  # killed while trial 1 trained
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    run_dir = tmp_path / "outputs" / "optuna" / STUDY / "1"
    killed = client.create_run(experiment, tags={"run_dir": str(run_dir)}).info.run_id
    gone_stale(tmp_path / "outputs" / "optuna" / f"{STUDY}.db", 1)
    again = run_app(*search, "hydra.sweeper.n_trials=2")
    assert again.code == 0, again.err
    assert states(load(tmp_path)) == ["COMPLETE", "FAIL", "COMPLETE"]  # retried as trial 2
    assert metrics(tmp_path, 1)["status"] == "failed"
    assert client.get_run(killed).info.status == "FAILED"


def test_an_in_memory_pruned_search_says_once_that_it_cannot_prune(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna_pruned", "hydra.sweeper.storage=null", "hydra.sweeper.n_trials=2",
        "epochs=1", "hidden=8",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert (result.out + result.err).count("no pruning") == 1


def test_a_trial_reads_its_own_number_and_folder(run_app, tmp_path):
    """``${trial}`` and ``${hydra:...}`` in a search resolve to each trial's own values (its
    number, its folder), as the sweeper checks them before the first trial."""
    result = run_app(*SMALL, "hydra.sweeper.n_trials=2", "seed=${trial}",
                     "tags=[${hydra:runtime.output_dir},job${hydra:job.num}]")  # fmt: skip
    assert result.code == 0, result.err
    for trial in (0, 1):
        config = metrics(tmp_path, trial)["config"]
        folder = tmp_path / "outputs" / "optuna" / STUDY / str(trial)
        assert config["seed"] == trial and config["tags"] == [str(folder), f"job{trial}"]


def test_trials_split_by_another_workers_trial_keep_their_numbers(run_app, tmp_path, monkeypatch):
    """Another worker on the study may ask for a trial between two of this worker's batch
    (3 and 5, say): each job's number is still its trial's, so a seed per trial is too."""
    ask = optuna.Study.ask

    def ask_after_another_worker(study, *args, **kwargs):
        trial = ask(study, *args, **kwargs)
        if trial.number == 0:  # the other worker's, which it then ends
            study.tell(ask(study), state=optuna.trial.TrialState.PRUNED)
        return trial

    monkeypatch.setattr(optuna.Study, "ask", ask_after_another_worker)
    result = run_app(*SMALL, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2",
                     "seed=${hydra:job.num}", "hydra/launcher=stacked")  # fmt: skip
    assert result.code == 0, result.err
    trials = [t for t in load(tmp_path).trials if t.state.name == "COMPLETE"]
    assert [t.number for t in trials][:2] == [0, 2]  # one batch, split by trial 1
    for trial in trials:
        assert metrics(tmp_path, trial.number)["config"]["seed"] == trial.number
