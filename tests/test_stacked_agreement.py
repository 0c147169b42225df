"""Every job the stacked launcher trains in a stack agrees with its solo run; every other job
trains solo (group.solo_reason). Drawn over widths, depths, optimizers and their arguments,
schedules, epochs, seeds and both variants, on a slice of the default data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import group, job
from mlp_sweep.data import Split, Splits
from mlp_sweep.errors import ConfigError
from mlp_sweep.model import LOSSES
from mlp_sweep.stacked import Stack
from mlp_sweep.train import Diverged, evaluate, fit

CONF = Path(__file__).resolve().parent.parent / "conf"
CPU = torch.device("cpu")
BATCH = 50


@pytest.fixture(scope="module")
def splits() -> Splits:
    """300 training and 200 validation images of the default data set."""
    cfg = OmegaConf.create(
        {"data": {"name": "mnist_5k", "val_size": 500, "root": None, "download": False,
                  "cache_dir": None}}
    )  # fmt: skip
    full = job.load_data(cfg, CPU)
    return Splits(_head(full.train, 300), _head(full.val, 200), _head(full.test, 10), 784, 10)


def _head(split: Split, n: int) -> Split:
    return Split(split.x[:n], split.y[:n])


# Arguments a job may give its optimizer, with values that a solo run accepts.
_IMPLEMENTATION = st.sampled_from(
    [{}, {"foreach": True}, {"foreach": False}, {"fused": True}, {"fused": False}]
)


@st.composite
def optimizers(draw: st.DrawFn) -> dict:
    name = draw(st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]))
    if name == "rmsprop":  # outside the set proven to train stacked
        settings_ = {"_target_": "torch.optim.RMSprop", "_partial_": True, "lr": "${lr}"}
    else:
        settings_ = OmegaConf.to_container(OmegaConf.load(CONF / "optimizer" / f"{name}.yaml"))
    settings_["weight_decay"] = draw(st.sampled_from([0.0, 0.01]))
    settings_["maximize"] = draw(st.booleans()) if draw(st.integers(0, 5)) == 0 else False
    settings_.update(draw(_IMPLEMENTATION))
    if name == "sgd":
        settings_["momentum"] = draw(st.sampled_from([0.0, 0.9]))
        settings_["nesterov"] = settings_["momentum"] > 0 and draw(st.booleans())
        if not settings_["nesterov"]:
            settings_["dampening"] = draw(st.sampled_from([0.0, 0.1]))
    elif name in ("adam", "adamw"):
        settings_["amsgrad"] = draw(st.booleans())
        settings_["betas"] = draw(st.sampled_from([[0.9, 0.999], [0.8, 0.99]]))
        settings_["eps"] = draw(st.sampled_from([1e-8, 1e-6]))
    return settings_


@st.composite
def members(draw: st.DrawFn, depth: int, activation: str, variant: str) -> DictConfig:
    opt = draw(optimizers())
    sgd_like = opt["_target_"] == "torch.optim.SGD"
    epochs = draw(st.integers(1, 2))
    scheduler = draw(st.sampled_from(["none", "cosine", "step", "onecycle"]))
    return OmegaConf.create(
        {
            "hidden": draw(st.lists(st.sampled_from([8, 16, 24]), min_size=depth, max_size=depth)),
            "init_std": draw(st.sampled_from([0.1, None])),
            "seed": draw(st.integers(0, 3)),
            "epochs": epochs,
            "lr": draw(st.sampled_from([0.05, 0.5] if sgd_like else [0.001, 0.01])),
            "batch_size": BATCH,
            "model": {"name": variant, "activation": activation},
            "optimizer": opt,
            "scheduler": None
            if scheduler == "none"
            else OmegaConf.load(CONF / "scheduler" / f"{scheduler}.yaml"),
        }
    )


@st.composite
def groups(draw: st.DrawFn) -> list[DictConfig]:
    depth = draw(st.integers(1, 2))
    activation = draw(st.sampled_from(["sigmoid", "relu", "tanh"]))
    variant = draw(st.sampled_from(["softmax_ce", "sigmoid_mse"]))
    return draw(st.lists(members(depth, activation, variant), min_size=1, max_size=4))


def _build(cfg: DictConfig, splits: Splits) -> tuple:
    model, optimizer, generator = job.build(cfg, splits, CPU)
    return model, optimizer, generator, job.schedule(cfg, optimizer, splits)


def train_solo(cfg: DictConfig, splits: Splits) -> tuple[float, float]:
    """First-epoch training loss and final validation accuracy (NaN if the run diverged), as
    a solo run trains."""
    model, optimizer, generator, schedule = _build(cfg, splits)
    epochs: list[dict] = []
    loss = LOSSES[cfg.model.name]
    try:
        fit(model, loss, optimizer, splits, epochs=cfg.epochs, batch_size=BATCH,
            generator=generator, on_epoch=epochs.append, progress=False,
            schedule=schedule)  # fmt: skip
    except Diverged as err:
        return (epochs[0] if epochs else err.epoch)["train_loss"], math.nan
    return epochs[0]["train_loss"], evaluate(model, loss, splits.val)[1]


def train_stacked(cfgs: list[DictConfig], splits: Splits) -> list[tuple[float, float]]:
    """The same for each of ``cfgs``, trained in one stack as group.run_group trains them:
    each member leaves after its own epochs."""
    built = [_build(cfg, splits) for cfg in cfgs]
    name = cfgs[0].model.name
    stack = Stack([b[0] for b in built], cfgs[0].model.activation, [b[1] for b in built])
    first: dict[int, float] = {}
    final: dict[int, float] = {}
    diverged: set[int] = set()
    active = list(range(len(cfgs)))
    epoch = 0
    while active:
        epoch += 1
        schedules = [built[i][3] for i in active]
        losses, _ = stack.train_epoch(
            name, splits.train, BATCH, [built[i][2] for i in active], schedules
        )
        for schedule in schedules:
            if schedule is not None:
                schedule.after_epoch()
        if epoch == 1:
            first = dict(zip(active, losses))
        diverged.update(i for i, value in zip(active, losses) if not math.isfinite(value))
        accs = stack.evaluate(name, splits.val)[1]
        staying = [k for k, i in enumerate(active) if cfgs[i].epochs > epoch]
        final.update({i: accs[k] for k, i in enumerate(active) if cfgs[i].epochs <= epoch})
        stack.keep(staying)
        active = [active[k] for k in staying]
    return [(first[i], math.nan if i in diverged else final[i]) for i in range(len(cfgs))]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cfgs=groups())
def test_every_stacked_member_agrees_with_its_solo_run_or_trains_solo(splits, cfgs):
    try:
        for cfg in cfgs:
            job.build_optimizer(cfg.optimizer, torch.nn.Linear(1, 1))  # as job.check does
    except ConfigError:
        assume(False)  # refused before anything trains, under either launcher
    stacked = [cfg for cfg in cfgs if group.solo_reason(cfg) is None]
    assume(stacked)
    for cfg, (first, acc) in zip(stacked, train_stacked(stacked, splits)):
        solo_first, solo_acc = train_solo(cfg, splits)
        if not math.isfinite(solo_acc):  # the solo run diverged: so did its member
            assert not math.isfinite(acc), OmegaConf.to_yaml(cfg)
            if math.isfinite(solo_first):  # after its first epoch
                assert abs(first - solo_first) <= 1e-4 * abs(solo_first), OmegaConf.to_yaml(cfg)
            continue
        assert abs(first - solo_first) <= 1e-4 * abs(solo_first), OmegaConf.to_yaml(cfg)
        assert abs(acc - solo_acc) <= 0.005, OmegaConf.to_yaml(cfg)


@pytest.mark.parametrize(
    ("optimizer", "reason"),
    [
        ({"fused": True}, "optimizer.fused=true"),
        ({"_target_": "torch.optim.RMSprop"}, "torch.optim.RMSprop"),
        ({"differentiable": False}, None),  # a torch default, as if not given
        ({"fused": False, "capturable": None}, None),  # off: as their default
        ({"foreach": True, "nesterov": True, "momentum": 0.9}, None),
    ],
)
def test_what_trains_solo_says_why(optimizer, reason):
    cfg = OmegaConf.create({"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True}})
    cfg.optimizer.update(optimizer)
    why = group.solo_reason(cfg)
    assert why == reason or (reason is not None and reason in why)
