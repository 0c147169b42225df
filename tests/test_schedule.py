"""Learning-rate schedules: built from the `scheduler` group, stepped, checkpointed, resumed."""

import json
import math

import pytest
import torch
from conftest import REPO
from omegaconf import DictConfig, OmegaConf
from test_faults import read, start, values, wait_for_epoch

from mlp_sweep.data import load
from mlp_sweep.model import LOSSES, MLP
from mlp_sweep.schedule import build_schedule
from mlp_sweep.train import fit

CONF = REPO / "conf" / "scheduler"


@pytest.fixture(scope="module")
def mnist_5k():
    return load("mnist_5k", device=torch.device("cpu"), val_size=500)


def scheduler_config(name: str, **values) -> DictConfig:
    """conf/scheduler/<name>.yaml with its interpolations (${lr}, ${epochs}) filled in."""
    return OmegaConf.create(
        {**values, "scheduler": OmegaConf.load(CONF / f"{name}.yaml")}
    ).scheduler


def train(data, name: str, epochs: int, batch_size: int = 100):
    torch.manual_seed(1)
    model = MLP(784, [32], 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = scheduler_config(name, lr=0.1, epochs=epochs)
    steps = math.ceil(3500 / batch_size)
    schedule = build_schedule(cfg, optimizer, steps_per_epoch=steps, epochs=epochs)
    fit(model, LOSSES["softmax_ce"], optimizer, data, epochs=epochs, batch_size=batch_size,
        generator=torch.Generator().manual_seed(1), schedule=schedule)  # fmt: skip
    return schedule.scheduler, optimizer.param_groups[0]["lr"]


def test_cosine_steps_once_per_epoch_down_to_its_floor(mnist_5k):
    scheduler, lr = train(mnist_5k, "cosine", epochs=2)
    assert scheduler.last_epoch == 2 and lr == pytest.approx(0.0)


def test_step_scales_the_rate_by_gamma_every_step_size_epochs(mnist_5k):
    scheduler, lr = train(mnist_5k, "step", epochs=1)
    assert scheduler.last_epoch == 1 and lr == 0.1  # the first drop comes after epoch 10


def test_one_cycle_steps_after_every_batch_and_ends_far_below_its_start(mnist_5k):
    scheduler, lr = train(mnist_5k, "onecycle", epochs=2, batch_size=100)
    assert scheduler.last_epoch == 2 * 35  # 3,500 training images in batches of 100
    assert lr < 0.1 / 25 / 10  # a tenth of where it started, max_lr / div_factor


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_one_cycle_drives_every_optimizer(run_app, tmp_path, optimizer):
    result = run_app(f"optimizer={optimizer}", "scheduler=onecycle", "hidden=16", "epochs=1")
    assert result.code == 0, result.err


def test_a_run_records_its_schedule_and_checkpoints_it(run_app, tmp_path):
    assert run_app("epochs=2", "scheduler=cosine", "hydra.run.dir=r").code == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["choices"]["scheduler"] == "cosine" and m["params"]["scheduler.interval"] == "epoch"
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["scheduler"]["last_epoch"] == 2 and state["scheduler"]["T_max"] == 2


def test_a_killed_run_with_a_scheduler_resumes_to_the_same_result(tmp_path):
    args = ["hidden=[1000]", "epochs=4", "scheduler=onecycle"]
    straight = start(*args, "hydra.run.dir=straight", cwd=tmp_path)  # meanwhile, never stopped
    killed = start(*args, "hydra.run.dir=killed", cwd=tmp_path)
    wait_for_epoch(tmp_path / "killed" / "metrics.json", 1, killed)
    killed.kill()  # SIGKILL between epochs: the checkpoint holds the scheduler mid-cycle
    killed.communicate()
    assert read(tmp_path / "killed" / "metrics.json")["epochs_run"] < 4

    resumed = start(*args, "hydra.run.dir=killed", cwd=tmp_path)
    for proc in (resumed, straight):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    again, uninterrupted = (read(tmp_path / d / "metrics.json") for d in ("killed", "straight"))
    assert again["final"] == uninterrupted["final"]
    assert values(again["history"]) == values(uninterrupted["history"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["scheduler=plateau"],
            "scheduler=plateau is invalid: allowed: cosine, none, onecycle, step",
        ),
        (["scheduler=step", "scheduler.interval=week"], "scheduler.interval='week' is invalid"),
        (
            ["scheduler=onecycle", "scheduler.pct_start=2"],
            "scheduler (torch.optim.lr_scheduler.OneCycleLR) cannot be built: Expected float",
        ),
        (
            ["scheduler=step", "scheduler.step_size=0"],
            "scheduler (torch.optim.lr_scheduler.StepLR) fails within the run's first 1 steps",
        ),
    ],
)
def test_a_bad_scheduler_fails_with_one_line_before_training(run_app, tmp_path, args, says):
    result = run_app(*args, "epochs=1")
    assert result.code == 2
    assert result.err.strip().splitlines()[-1].startswith("error: ")
    assert says in result.err.strip().splitlines()[-1]
    assert not any(r["epochs_run"] for r in map(read, tmp_path.rglob("metrics.json")))
