"""Scale-out on existing engines: one study shared by several processes, and submitit."""

import json
import os
import subprocess
import sys
import uuid

import optuna
import pandas as pd
import pytest
from conftest import REPO

POSTGRES = os.environ.get("MLP_SWEEP_POSTGRES_URL")


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES, reason="set MLP_SWEEP_POSTGRES_URL to a PostgreSQL database")
def test_two_processes_share_one_postgresql_study_without_losing_or_repeating_a_trial(tmp_path):
    study = f"shared-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, str(REPO / "run.py"), "hparams_search=optuna", "epochs=2"]
    command += [f"hydra.sweeper.{k}={v}" for k, v in (("storage", POSTGRES), ("study_name", study))]
    command.append("hydra.sweeper.n_trials=8")
    workers = [
        subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    logs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    try:
        trials = optuna.load_study(study_name=study, storage=POSTGRES).trials
        numbers = [t.number for t in trials]
        assert numbers == list(range(len(numbers)))
        # Each worker stops once the study has its total; both may have a trial in flight then.
        assert 8 <= len(trials) <= 9
        assert {t.state.name for t in trials} == {"COMPLETE"}
        ran = [[line for line in out.splitlines() if "trial=" in line] for out, _ in logs]
        assert all(ran), "both processes ran trials"
        folders = tmp_path / "outputs" / "optuna" / study
        assert sorted(json.loads((folders / str(n) / "metrics.json").read_text())["trial"]["number"]
                      for n in numbers) == numbers  # fmt: skip
    finally:
        optuna.delete_study(study_name=study, storage=POSTGRES)


def test_submitit_local_runs_a_grid(run_script, tmp_path):
    result = run_script(
        "-m", "hydra/launcher=submitit_local", "hidden=20,40", "epochs=2", "hydra.sweep.dir=g"
    )
    assert result.code == 0, result.err
    summary = pd.read_csv(tmp_path / "g" / "summary.csv")
    assert sorted(summary["hidden"]) == [20, 40] and (summary["status"] == "complete").all()
    assert list((tmp_path / "g" / ".submitit").iterdir())  # the jobs went through submitit


def test_submitit_local_runs_a_search(run_script, tmp_path):
    result = run_script(
        "hparams_search=optuna",
        "hydra/launcher=submitit_local",
        "hydra.sweeper.n_trials=2",
        "epochs=2",
    )
    assert result.code == 0, result.err
    url = f"sqlite:///{tmp_path}/outputs/optuna/optuna-mnist_5k-val_acc.db"
    trials = optuna.load_study(study_name="optuna-mnist_5k-val_acc", storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    folder = tmp_path / "outputs" / "optuna" / "optuna-mnist_5k-val_acc"
    assert (folder / ".submitit").is_dir() and len(pd.read_csv(folder / "summary.csv")) == 2
