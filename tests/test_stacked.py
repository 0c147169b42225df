"""hydra/launcher=stacked: the jobs of a sweep trained together, each a normal run."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from conftest import REPO
from test_faults import start, wait_for_epoch
from test_search import STRONG_THEN_WEAK

from mlp_sweep import job as job_module
from mlp_sweep.model import MLP

STACKED = "hydra/launcher=stacked"


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def runs(folder: Path, n: int) -> list[dict]:
    return [read(folder / str(i) / "metrics.json") for i in range(n)]


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory) -> Path:
    """One grid of different widths and optimizers, under the basic launcher and stacked."""
    from conftest import run_in_process

    root = tmp_path_factory.mktemp("side_by_side")
    grid = ["-m", "hidden=40,50", "optimizer=sgd,adam", "lr=0.05", "epochs=3"]
    for launcher, folder in (("hydra/launcher=basic", "solo"), (STACKED, "stacked")):
        result = run_in_process(*grid, launcher, f"hydra.sweep.dir={folder}", cwd=root)
        assert result.code == 0, result.err
    return root


def test_stacked_members_agree_with_their_solo_runs(side_by_side):
    solo, stacked = (runs(side_by_side / f, 4) for f in ("solo", "stacked"))
    for a, b in zip(solo, stacked):
        assert a["params"] == b["params"]
        first_a, first_b = a["history"][0]["train_loss"], b["history"][0]["train_loss"]
        assert abs(first_a - first_b) <= 1e-4 * abs(first_a)
        for key in ("train_acc", "val_acc", "test_acc"):
            assert abs(a["final"][key] - b["final"][key]) <= 0.005


def test_a_stacked_member_leaves_the_files_of_a_solo_run(side_by_side):
    solo, stacked = side_by_side / "solo" / "1", side_by_side / "stacked" / "1"
    files = sorted(p.relative_to(solo).as_posix() for p in solo.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(stacked).as_posix() for p in stacked.rglob("*") if p.is_file()
    )
    assert (stacked / "mlp_sweep.log").read_text().count("epoch ") == 3


def test_metrics_say_a_member_ran_stacked_and_with_whom(side_by_side):
    record = read(side_by_side / "stacked" / "0" / "metrics.json")
    group = [str(side_by_side / "stacked" / str(i)) for i in range(4)]
    assert record["stacked"] == {"group": group, "members": 4}
    assert "stacked" not in read(side_by_side / "solo" / "0" / "metrics.json")


def test_a_member_model_loads_into_mlp_and_holds_only_its_own_weights(side_by_side):
    folder = side_by_side / "stacked" / "0"  # hidden=40, stacked beside hidden=50
    state = torch.load(folder / "model.pt", weights_only=True)
    model = MLP(784, 40, 10)
    model.load_state_dict(state)
    assert state["layers.0.weight"].untyped_storage().nbytes() == 40 * 784 * 4


def test_a_diverging_member_fails_alone(run_app, tmp_path):
    result = run_app("-m", "lr=0.1,1e38", "init_std=0.5", "epochs=2", STACKED, "hydra.sweep.dir=g")
    assert result.code == 1 and "training diverged" in result.err.strip().splitlines()[-1]
    ok, failed = runs(tmp_path / "g", 2)
    assert failed["status"] == "failed" and "diverged" in failed["error"]
    assert ok["status"] == "complete" and ok["epochs_run"] == 2
    assert "training diverged" in (tmp_path / "g" / "1" / "mlp_sweep.log").read_text()
    solo = run_app("lr=0.1", "init_std=0.5", "epochs=2", "hydra.run.dir=solo")
    assert solo.code == 0
    assert ok["final"]["val_acc"] == pytest.approx(
        read(tmp_path / "solo" / "metrics.json")["final"]["val_acc"], abs=0.005
    )


def test_members_with_different_epochs_each_stop_at_their_own(run_app, tmp_path):
    result = run_app("-m", "epochs=1,3", "hidden=20", STACKED, "hydra.sweep.dir=g")
    assert result.code == 0, result.err
    assert [r["epochs_run"] for r in runs(tmp_path / "g", 2)] == [1, 3]


def test_members_continue_from_their_own_checkpoints(run_app, tmp_path):
    grid = ["-m", "hidden=20,30", "init_std=0.01,0.1", STACKED]
    assert run_app(*grid, "epochs=1", "hydra.sweep.dir=g").code == 0
    assert run_app(*grid, "epochs=3", "hydra.sweep.dir=g").code == 0
    assert run_app(*grid, "epochs=3", "hydra.sweep.dir=straight").code == 0
    for continued, straight in zip(runs(tmp_path / "g", 4), runs(tmp_path / "straight", 4)):
        assert continued["epochs_run"] == 3
        assert continued["final"] == pytest.approx(straight["final"], abs=1e-6)


def test_ctrl_c_marks_every_running_member_interrupted(tmp_path):
    proc = start(
        "-m", "hidden=[800],[700]", "epochs=20", STACKED, "hydra.sweep.dir=g", cwd=tmp_path
    )
    # Job 0, the wider, records its epochs after job 1: wait until both have one.
    wait_for_epoch(tmp_path / "g" / "0" / "metrics.json", 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    for record in runs(tmp_path / "g", 2):
        assert record["status"] == "interrupted" and 1 <= record["epochs_run"] < 20
    # No run finished: the line says so, and that the summary lists them as they stopped.
    assert err.strip().splitlines()[-1] == (
        "interrupted; no run had finished; the runs are kept as they stopped, and the summary "
        "lists them"
    )


def test_ctrl_c_leaves_no_folder_for_a_job_that_had_not_started(tmp_path):
    # One job a group, narrowest first: job 1 waits for job 0, and Ctrl-C comes first. A
    # folder made for it would be empty: collect would find no run there, and Hydra's own
    # launcher makes a job's folder only as the job starts.
    # In a nested subdir too, where the last line looks for what the sweep kept.
    args = ("-m", "hidden=[700],[800]", "epochs=20", STACKED, "hydra.launcher.max_members=1")
    nested = "hydra.sweep.subdir=job${hydra:job.num}/run"
    proc = start(*args, "hydra.sweep.dir=g", nested, cwd=tmp_path)
    wait_for_epoch(tmp_path / "g" / "job0" / "run" / "metrics.json", 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert read(tmp_path / "g" / "job0" / "run" / "metrics.json")["status"] == "interrupted"
    assert not (tmp_path / "g" / "job1").exists()
    assert err.strip().splitlines()[-1].startswith("interrupted; no run had finished; ")


def test_a_search_trains_its_trials_stacked_and_prunes_a_member(run_app, tmp_path):
    result = run_app(
        *STRONG_THEN_WEAK,
        STACKED,
        "hydra.launcher.max_members=1",  # one trial a batch: the second sees the first's epochs
        "epochs=4",
    )
    assert result.code == 0, result.err
    name = "optuna_pruned-mnist_5k-val_acc"
    study = optuna.load_study(
        study_name=name, storage=f"sqlite:///{tmp_path}/outputs/optuna/{name}.db"
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    pruned = read(tmp_path / "outputs" / "optuna" / name / "1" / "metrics.json")
    assert pruned["status"] == "pruned" and "stacked" in pruned


def test_a_search_asks_for_a_batch_of_trials_and_trains_them_together(run_app, tmp_path):
    result = run_app("hparams_search=optuna", STACKED, "hydra.sweeper.n_trials=3", "epochs=1")
    assert result.code == 0, result.err
    folder = tmp_path / "outputs" / "optuna" / "optuna-mnist_5k-val_acc"
    for i in range(3):  # one batch of 3, grouped by what the trials share
        record = read(folder / str(i) / "metrics.json")
        assert record["status"] == "complete" and str(folder / str(i)) in record["stacked"]["group"]


def test_a_member_checkpoint_holds_its_own_optimizer_state_as_a_solo_run(side_by_side):
    # Job 1 is hidden=40 with Adam, stepped by one Adam over the group's Adam members.
    solo, stacked = (
        torch.load(side_by_side / f / "1" / "checkpoint.pt", weights_only=False)["optimizer"]
        for f in ("solo", "stacked")
    )
    assert solo["param_groups"] == stacked["param_groups"]
    assert solo["state"].keys() == stacked["state"].keys() == {0, 1, 2, 3}
    for a, b in zip(solo["state"].values(), stacked["state"].values()):
        assert a["step"] == b["step"]
        assert torch.allclose(a["exp_avg_sq"], b["exp_avg_sq"], rtol=1e-3, atol=1e-9)


def test_a_bad_max_members_fails_with_one_line(run_app):
    result = run_app("-m", "hidden=20", STACKED, "hydra.launcher.max_members=0")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert "hydra.launcher.max_members=0 is invalid" in line


def test_widths_too_far_apart_train_in_groups_of_their_own(run_app, tmp_path):
    # hidden=20 padded to 200 would hold 8.3x its own weights; 1.5x is allowed by default.
    result = run_app("-m", "hidden=20,25,200", "epochs=1", STACKED, "hydra.sweep.dir=s")
    assert result.code == 0, result.err
    groups = [r["stacked"]["members"] for r in runs(tmp_path / "s", 3)]
    assert groups == [2, 2, 1]
    result = run_app("-m", "hidden=20,25,200", "epochs=1", STACKED, "hydra.sweep.dir=t",
                     "hydra.launcher.max_padding=10")  # fmt: skip
    assert [r["stacked"]["members"] for r in runs(tmp_path / "t", 3)] == [3, 3, 3]


@pytest.mark.parametrize("value", ["0.5", "abc"])
def test_a_bad_max_padding_fails_with_one_line(run_app, value):
    result = run_app("-m", "hidden=20", STACKED, f"hydra.launcher.max_padding={value}")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert "hydra.launcher.max_padding=" in line


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_stacked_members_follow_their_schedules_as_solo_runs_do(run_app, tmp_path, scheduler):
    grid = ["-m", "hidden=20,40", "lr=0.05,0.5", f"scheduler={scheduler}", "epochs=3"]
    for launcher, folder in (("hydra/launcher=basic", "solo"), (STACKED, "stacked")):
        result = run_app(*grid, launcher, f"hydra.sweep.dir={folder}")
        assert result.code == 0, result.err
    for a, b in zip(runs(tmp_path / "solo", 4), runs(tmp_path / "stacked", 4)):
        for epoch_a, epoch_b in zip(a["history"], b["history"]):  # the schedule, epoch by epoch
            assert (
                abs(epoch_a["train_loss"] - epoch_b["train_loss"]) <= 1e-4 * epoch_a["train_loss"]
            )
        assert abs(a["final"]["val_acc"] - b["final"]["val_acc"]) <= 0.005


def test_an_optimizer_argument_not_proven_stacked_trains_solo(run_app, tmp_path):
    grid = ["-m", "optimizer=adam", "lr=0.01", "+optimizer.fused=true", "hidden=30,40", "epochs=2"]
    for launcher, folder in (("hydra/launcher=basic", "solo"), (STACKED, "stacked")):
        result = run_app(*grid, launcher, f"hydra.sweep.dir={folder}")
        assert result.code == 0, result.err
    assert result.out.count("trains solo: optimizer.fused=true") == 2
    for a, b in zip(runs(tmp_path / "solo", 2), runs(tmp_path / "stacked", 2)):
        assert b["status"] == "complete" and "stacked" not in b
        assert abs(a["final"]["val_acc"] - b["final"]["val_acc"]) <= 0.005
    log = (tmp_path / "stacked" / "0" / "mlp_sweep.log").read_text()
    assert "trains solo: optimizer.fused=true" in log and log.count("epoch ") == 2


def test_adamw_trains_stacked_beside_sgd_as_its_solo_run(run_app, tmp_path):
    grid = ["-m", "optimizer=adamw,sgd", "lr=0.01", "epochs=1"]
    for launcher, folder in (("hydra/launcher=basic", "solo"), (STACKED, "stacked")):
        result = run_app(*grid, launcher, f"hydra.sweep.dir={folder}")
        assert result.code == 0, result.err
    for a, b in zip(runs(tmp_path / "solo", 2), runs(tmp_path / "stacked", 2)):
        assert b["status"] == "complete" and b["stacked"]["members"] == 2
        first_a, first_b = a["history"][0]["train_loss"], b["history"][0]["train_loss"]
        assert abs(first_a - first_b) <= 1e-4 * abs(first_a)
        assert abs(a["final"]["val_acc"] - b["final"]["val_acc"]) <= 0.005


def test_a_group_that_cannot_load_its_data_fails_alone(run_app, tmp_path, shared_data):
    root = tmp_path / "only_mnist"
    root.mkdir()
    (root / "MNIST").symlink_to(shared_data / "MNIST")
    grid = ["-m", "data=fashion_mnist,mnist", f"data.root={root}", "epochs=1", "hidden=20"]
    result = run_app(*grid, STACKED, "hydra.sweep.dir=g")
    assert result.code == 2 and "FashionMNIST/raw lacks" in result.err  # as under basic
    fashion, mnist = runs(tmp_path / "g", 2)
    assert mnist["status"] == "complete"
    assert fashion["status"] == "failed" and "FashionMNIST" in fashion["error"]
    assert "FashionMNIST" in (tmp_path / "g" / "0" / "mlp_sweep.log").read_text()
    assert (tmp_path / "g" / "summary.csv").is_file()


def test_a_member_counts_its_own_time_not_earlier_groups(run_app, tmp_path):
    # Two depths, two groups: the wide one first, then the small one.
    result = run_app("-m", "hidden=[1500],[10,10]", "epochs=2", STACKED, "hydra.sweep.dir=g")
    assert result.code == 0, result.err
    wide, small = runs(tmp_path / "g", 2)
    assert small["seconds"]["data"] < wide["seconds"]["train"] / 2
    assert small["seconds"]["total"] < wide["seconds"]["train"]
    (line,) = [line for line in result.out.splitlines() if line.startswith("job 1")]
    assert line.endswith(f"{small['seconds']['total']:.1f}s")


def test_console_epochs_shows_the_epochs_of_the_jobs_that_ask_labelled(run_app):
    result = run_app("-m", "console=auto,epochs", "hidden=20", "epochs=2", STACKED)
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if "epoch " in line and "/2" in line]
    assert len(lines) == 2
    assert all("[mlp_sweep.train][INFO] - job 1  epoch " in line for line in lines)


@pytest.mark.parametrize("launcher", ["hydra/launcher=basic", STACKED])
def test_threads_of_one_job_do_not_leak_into_the_next(tmp_path, launcher):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # torch's own default
    default = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    if int(default.stdout) == 1:
        pytest.skip("torch uses one thread on this machine by default")
    grid = ["-m", "threads=1,null", "hidden=20", "epochs=1", launcher, "hydra.sweep.dir=g"]
    result = subprocess.run(
        [sys.executable, str(REPO / "run.py"), *grid],
        cwd=tmp_path, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["threads"] for r in runs(tmp_path / "g", 2)] == [1, int(default.stdout)]


def test_each_member_costs_its_own_share_of_the_group(run_app, tmp_path):
    result = run_app(
        "-m", "hidden=40,60", "objective=[val_acc,seconds]", "epochs=2", STACKED,
        "hydra.launcher.max_padding=2", "hydra.sweep.dir=g",
    )  # fmt: skip
    assert result.code == 0, result.err
    narrow, wide = runs(tmp_path / "g", 2)
    assert narrow["stacked"]["members"] == 2
    shares = [r["history"][0]["seconds"] for r in (narrow, wide)]
    weights = [r["final"]["n_params"] for r in (narrow, wide)]
    assert shares[0] / shares[1] == pytest.approx(weights[0] / weights[1], rel=1e-6)
    assert narrow["objective"]["value"][1] < wide["objective"]["value"][1]


def test_kill_9_then_the_same_command_repeats_nothing_that_finished(tmp_path):
    # Two groups (20 padded to 1500 would be far over max_padding): the first completes, the
    # second is killed after its second epoch.
    grid = ["-m", "hidden=[20],[1500]", "epochs=5", STACKED, "hydra.sweep.dir=g"]
    proc = start(*grid, cwd=tmp_path)
    wait_for_epoch(tmp_path / "g" / "1" / "metrics.json", 2, proc)
    proc.kill()
    proc.wait()
    first, killed = runs(tmp_path / "g", 2)
    assert first["status"] == "complete" and killed["status"] == "running"
    again = start(*grid, cwd=tmp_path)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    kept, continued = runs(tmp_path / "g", 2)
    assert kept["finished_at"] == first["finished_at"]  # not trained again
    assert continued["status"] == "complete" and continued["epochs_run"] == 5
    done = killed["epochs_run"]
    assert continued["history"][:done] == killed["history"]  # its finished epochs kept
    log = (tmp_path / "g" / "1" / "mlp_sweep.log").read_text()
    (resumed,) = re.findall(r"continuing .* after epoch (\d+)", log)
    assert int(resumed) >= done and log.count("epoch 1/5") == 1


def _ctrl_c_while_drawing_curves_of(job: str, monkeypatch) -> None:
    """Ctrl-C pressed (once) while job ``job`` draws its curves.png (as a slow drawing would
    be); the sweep's end draws it again."""
    draw = job_module.drawing.curves
    pressed = []

    def interrupted(history, path, *args, **kwargs):
        if path.parent.name == job and not pressed:
            pressed.append(path)
            raise KeyboardInterrupt
        draw(history, path, *args, **kwargs)

    monkeypatch.setattr(job_module.drawing, "curves", interrupted)


def test_ctrl_c_while_a_member_completes_stops_the_sweep(run_app, tmp_path, monkeypatch):
    _ctrl_c_while_drawing_curves_of("0", monkeypatch)
    result = run_app("-m", "hidden=50,60,200", "epochs=1", STACKED, "hydra.sweep.dir=g")
    assert result.code == 130
    assert "failed" not in result.out
    first, second = runs(tmp_path / "g", 2)  # one group; hidden=200 a group of its own
    assert first["status"] == second["status"] == "interrupted"
    assert not (tmp_path / "g" / "2" / "metrics.json").exists()  # no later group starts
    assert (tmp_path / "g" / "0" / "curves.png").is_file()  # drawn at the sweep's end


def test_ctrl_c_while_a_divergence_is_recorded_stops_the_sweep(run_app, tmp_path, monkeypatch):
    _ctrl_c_while_drawing_curves_of("1", monkeypatch)
    grid = ["-m", "lr=0.1,1e38", "init_std=0.5", "epochs=3", "hidden=50", STACKED]
    result = run_app(*grid, "hydra.sweep.dir=g")
    assert result.code == 130
    ok, diverged = runs(tmp_path / "g", 2)
    assert ok["status"] == "interrupted" and ok["epochs_run"] == 1  # no epoch after Ctrl-C
    assert diverged["status"] == "failed" and "diverged" in diverged["error"]


def test_a_data_error_leaves_an_earlier_run_in_its_folder_as_it_was(run_app, tmp_path, shared_data):
    empty = tmp_path / "empty"
    empty.mkdir()
    grid = ["-m", "data=fashion_mnist", "hidden=20", STACKED, "hydra.sweep.dir=g"]
    assert run_app(*grid, "epochs=1", f"data.root={shared_data}").code == 0
    folder = tmp_path / "g" / "0"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    result = run_app(*grid, "epochs=2", f"data.root={empty}")
    assert result.code == 2 and "FashionMNIST" in result.err  # as under basic
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert run_app(*grid, "epochs=2", f"data.root={shared_data}").code == 0
    continued = read(folder / "metrics.json")
    assert continued["status"] == "complete" and continued["epochs_run"] == 2


def test_a_group_that_fails_to_load_counts_its_own_time(run_app, tmp_path, shared_data):
    root = tmp_path / "only_mnist"
    root.mkdir()
    (root / "MNIST").symlink_to(shared_data / "MNIST")
    grid = ["-m", "data=mnist_5k,fashion_mnist", f"data.root={root}", "epochs=1", "hidden=50,60"]
    assert run_app(*grid, STACKED, "hydra.sweep.dir=g").code == 2
    trained, failed = runs(tmp_path / "g", 4)[:2], runs(tmp_path / "g", 4)[2:]
    assert all(r["status"] == "failed" for r in failed)
    assert max(r["seconds"]["total"] for r in failed) < min(r["seconds"]["total"] for r in trained)


@pytest.mark.parametrize("launcher", ["hydra/launcher=basic", STACKED])
def test_an_unknown_launcher_setting_fails_with_one_line(run_app, launcher):
    result = run_app("-m", "hidden=20", "epochs=1", launcher, "+hydra.launcher.foo=1")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert "hydra.launcher.foo" in line
    if launcher == STACKED:
        assert "max_members" in line


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (["+optimizer.fused=null,true", "+optimizer.differentiable=false,true"], "differentiable"),
        (["+optimizer.capturable=true"], "capturable"),
    ],
)
@pytest.mark.parametrize("launcher", ["hydra/launcher=basic", STACKED])
def test_optimizer_settings_its_first_step_refuses_fail_before_training(
    run_app, tmp_path, launcher, settings, named
):
    grid = ["-m", "optimizer=adam", *settings, "hidden=50", "lr=0.01", "epochs=2", launcher]
    result = run_app(*grid, "hydra.sweep.dir=g")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert f"optimizer.{named}=true" in line and "cannot take a step" in line
    assert not list((tmp_path / "g").rglob("metrics.json"))


def test_a_solo_reason_is_shown_once_with_console_epochs(run_app):
    grid = ["-m", "optimizer=adam", "lr=0.01", "+optimizer.fused=true", "hidden=20"]
    result = run_app(*grid, "epochs=1", "console=epochs", STACKED)
    assert result.code == 0, result.err
    assert result.out.count("trains solo") == 1


def test_an_optimizer_argument_set_to_its_off_value_trains_stacked(run_app, tmp_path):
    grid = ["-m", "optimizer=adam", "lr=0.01", "+optimizer.fused=false", "hidden=20,30"]
    result = run_app(*grid, "epochs=1", STACKED, "hydra.sweep.dir=g")
    assert result.code == 0, result.err
    assert [r["stacked"]["members"] for r in runs(tmp_path / "g", 2)] == [2, 2]


def test_a_continued_run_counts_the_time_of_every_session(run_app, tmp_path):
    grid = ["-m", "hidden=[1500]", STACKED, "hydra.sweep.dir=g"]  # epochs dominate its time
    assert run_app(*grid, "epochs=1").code == 0
    first = read(tmp_path / "g" / "0" / "metrics.json")
    assert run_app(*grid, "epochs=2").code == 0
    continued = read(tmp_path / "g" / "0" / "metrics.json")
    assert continued["seconds"]["train"] <= continued["seconds"]["total"]
    assert continued["seconds"]["total"] > first["seconds"]["train"] + sum(
        e["seconds"] for e in continued["history"][1:]
    )


@pytest.mark.parametrize("launcher", ["hydra/launcher=basic", STACKED])
def test_each_job_resolves_hydra_interpolations_against_its_own_job(run_app, tmp_path, launcher):
    """``${hydra:...}`` in a job's config is that job's value under either launcher, although
    the stacked launcher composes every job before it trains any."""
    grid = ["-m", "hidden=20,30,40", "optimizer=sgd,adam", "epochs=1"]
    tags = "tags=[job${hydra:job.num},${hydra:runtime.choices.optimizer}]"
    assert run_app(*grid, tags, launcher, "hydra.sweep.dir=s").code == 0
    for num, m in enumerate(runs(tmp_path / "s", 6)):
        assert m["config"]["tags"] == [f"job{num}", m["choices"]["optimizer"]]
        assert m["config"]["optimizer"]["_target_"].lower().endswith(m["choices"]["optimizer"])


@pytest.mark.parametrize("launcher", ["hydra/launcher=basic", STACKED])
def test_a_grid_seeds_each_job_with_its_number(run_app, tmp_path, launcher):
    """The sweeper checks each job as that job: ``seed=${hydra:job.num}`` is an int there,
    and each run trains from its own seed."""
    args = ["-m", "hidden=20,30,40", "epochs=1", "seed=${hydra:job.num}", "hydra.sweep.dir=s"]
    assert run_app(*args, launcher).code == 0
    assert [m["config"]["seed"] for m in runs(tmp_path / "s", 3)] == [0, 1, 2]
    kept = [(tmp_path / "s" / str(n) / "model.pt").read_bytes() for n in range(3)]
    again = run_app(*args, launcher)  # the same grid again: every job is complete already
    assert again.code == 0, again.err
    assert [(tmp_path / "s" / str(n) / "model.pt").read_bytes() for n in range(3)] == kept


def test_a_sweep_subdir_may_read_a_jobs_values(run_app, tmp_path):
    grid = ["-m", "hidden=10,20", "epochs=1", "seed=${hydra:job.num}", "hydra.sweep.dir=s",
            "hydra.sweep.subdir=run_${seed}", "tags=[${hydra:runtime.output_dir}]"]  # fmt: skip
    assert run_app(*grid).code == 0
    for seed in (0, 1):
        record = read(tmp_path / "s" / f"run_{seed}" / "metrics.json")
        assert record["config"]["tags"] == [str(tmp_path / "s" / f"run_{seed}")]
