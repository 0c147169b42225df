"""Several objectives: `objective=[val_acc,n_params]` in searches and grids, Pareto fronts."""

import json
import re

import optuna
import pandas as pd
import pytest
from conftest import run_in_process

from mlp_sweep import cli
from mlp_sweep.objectives import pareto_optimal
from mlp_sweep.records import PARETO_PLOT

STUDY = "optuna-mnist_5k-val_acc+n_params"


@pytest.fixture(scope="module")
def size_grid(tmp_path_factory):
    """A grid of three widths, run once, with accuracy and size as its objectives."""
    root = tmp_path_factory.mktemp("grid")
    result = run_in_process(
        "-m", "hidden=8,16,64", "objective=[val_acc,n_params]", "epochs=1", "hydra.sweep.dir=g",
        cwd=root,
    )  # fmt: skip
    assert result.code == 0, result.err
    return root / "g"


# Unmarked, the batch size is fixed (large, so fast); marked slow, the command runs as given.
@pytest.mark.parametrize("fixed", [["batch_size=256"], pytest.param([], marks=pytest.mark.slow)])
def test_a_search_on_accuracy_and_size_marks_optunas_pareto_front(run_app, tmp_path, fixed):
    result = run_app(
        "hparams_search=optuna", "objective=[val_acc,n_params]", "hydra.sweeper.n_trials=6",
        *fixed, "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    url = f"sqlite:///{tmp_path}/outputs/optuna/{STUDY}.db"
    study = optuna.load_study(study_name=STUDY, storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    folder = tmp_path / "outputs" / "optuna" / STUDY
    summary = pd.read_csv(folder / "summary.csv")
    assert summary["pareto"].dtype == bool and summary["pareto"].any()
    assert sorted(summary.loc[summary["pareto"], "trial"]) == sorted(
        t.number for t in study.best_trials
    )
    assert (folder / PARETO_PLOT).is_file()
    assert "Pareto front:" in result.out


def test_every_run_records_its_size_and_training_time_as_objective_values(run_app, tmp_path):
    assert run_app("objective=[val_acc,seconds,n_params]", "epochs=1", "hydra.run.dir=r").code == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["objective"]["metric"] == ["val_acc", "seconds", "n_params"]
    assert m["objective"]["direction"] == ["maximize", "minimize", "minimize"]
    assert m["objective"]["value"] == [
        m["final"]["val_acc"],
        m["seconds"]["train"],
        m["final"]["n_params"],
    ]
    assert m["final"]["n_params"] == 784 * 100 + 100 + 100 * 10 + 10


def test_a_grid_with_two_objectives_gets_a_pareto_column(size_grid):
    summary = pd.read_csv(size_grid / "summary.csv").set_index("hidden")
    assert summary.loc[8, "pareto"]  # the smallest is never beaten on size
    best = summary["val_acc"].idxmax()
    assert summary.loc[best, "pareto"]  # nor the most accurate on accuracy
    assert summary["n_params"].tolist() == [784 * h + h + h * 10 + 10 for h in summary.index]
    # summary.md writes the flag as the flags of the settings are written: true or false
    rows = [r.split("|")[2].strip() for r in (size_grid / "summary.md").read_text().splitlines()
            if r.startswith("|") and "---" not in r]  # fmt: skip
    assert rows[0] == "pareto" and "true" in rows and set(rows[1:]) <= {"true", "false"}
    table = (size_grid / "summary.md").read_text()  # a count of parameters, to the last one
    assert all(re.search(rf"\|\s+{n} \|", table) for n in summary["n_params"])
    assert "e+0" not in table


def test_compare_ranks_by_any_single_metric(size_grid, capsys):
    assert cli.main(["compare", str(size_grid), "--metric", "n_params"]) == 0
    table = capsys.readouterr().out
    assert "ranked by n_params (minimize)" in table
    rows = [line for line in table.splitlines() if line.startswith("|") and "---" not in line]
    assert [row.split("|")[3].strip() for row in rows[1:]] == ["8", "16", "64"]
    assert "Best: run 0 (hidden=8): n_params 6370\n" in table  # a count, not 6370.0000


def test_runs_beaten_on_every_objective_are_off_the_front():
    points = [(0.9, 100), (0.9, 100), (0.8, 50), (0.7, 80), (float("nan"), 10)]
    assert pareto_optimal(points, ["maximize", "minimize"]) == [True, True, True, False, False]


def test_a_timeout_starts_no_trial_after_it(run_app, tmp_path):
    result = run_app(
        "hparams_search=optuna", "hydra.sweeper.timeout=1e-9", "hydra.sweeper.n_trials=5",
        "epochs=1",
    )  # fmt: skip
    assert result.code == 0, result.err
    study = optuna.load_study(
        study_name="optuna-mnist_5k-val_acc",
        storage=f"sqlite:///{tmp_path}/outputs/optuna/optuna-mnist_5k-val_acc.db",
    )
    assert len(study.trials) == 1  # the first batch starts, as in Optuna's optimize; no other


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["-m", "objective=[val_acc,test_acc]"],
            "'test_acc' cannot be an objective: the test set is never used to choose settings",
        ),
        (["-m", "objective=[val_acc]"], "a list needs two or more different metrics"),
        (
            ["-m", "objective=val_acc,train_loss"],  # a grid's summary ranks by one
            "objective differs between the jobs of this sweep (val_acc in job 0, train_loss in "
            "job 1)",
        ),
        (
            ["hparams_search=optuna_pruned", "objective=[val_acc,n_params]"],
            "hydra/sweeper/pruner=median cannot prune a search with several objectives",
        ),
        (
            [
                "hparams_search=optuna",
                "objective=[val_loss,n_params]",
                "hydra.sweeper.direction=minimize",
            ],
            "hydra.sweeper.direction=minimize contradicts objective=",
        ),
        (["hparams_search=optuna", "hydra.sweeper.timeout=0"], "hydra.sweeper.timeout=0"),
    ],
)
def test_bad_objectives_fail_with_one_line_before_anything_trains(run_app, tmp_path, args, says):
    result = run_app(*args, "epochs=1")
    assert result.code == 2, result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: ") and says in last
    assert not list(tmp_path.rglob("metrics.json"))
