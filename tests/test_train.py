import math

import pytest
import torch

from mlp_sweep.data import load
from mlp_sweep.model import LOSSES, MLP
from mlp_sweep.train import Diverged, evaluate, fit


@pytest.fixture(scope="module")
def mnist_5k():
    return load("mnist_5k", device=torch.device("cpu"), val_size=500)


def train(data, variant="softmax_ce", lr=0.1, epochs=2, seed=1):
    torch.manual_seed(seed)
    model = MLP(784, [50], 10)
    history = []
    fit(
        model,
        LOSSES[variant],
        torch.optim.SGD(model.parameters(), lr=lr),
        data,
        epochs=epochs,
        batch_size=100,
        generator=torch.Generator().manual_seed(seed),
        on_epoch=history.append,
    )
    return model, history


@pytest.mark.parametrize("variant", sorted(LOSSES))
def test_training_lowers_the_loss_and_beats_chance(mnist_5k, variant):
    model, history = train(mnist_5k, variant, lr=0.5 if variant == "softmax_ce" else 5.0, epochs=5)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert evaluate(model, LOSSES[variant], mnist_5k.test)[1] > 0.5  # chance is 0.1


def test_same_seed_gives_identical_histories(mnist_5k):
    _, a = train(mnist_5k)
    _, b = train(mnist_5k)
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in a] == [
        {k: v for k, v in e.items() if k != "seconds"} for e in b
    ]


def test_another_seed_gives_another_history(mnist_5k):
    _, a = train(mnist_5k, seed=1)
    _, b = train(mnist_5k, seed=2)
    assert a[-1]["train_loss"] != b[-1]["train_loss"]


def test_each_epoch_record_has_every_field(mnist_5k):
    _, history = train(mnist_5k, epochs=1)
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    assert 0 <= history[0]["val_acc"] <= 1 and history[0]["seconds"] > 0


def test_a_loss_that_becomes_nan_stops_training_after_that_epoch(mnist_5k):
    with pytest.raises(Diverged, match="in epoch 1"):
        train(mnist_5k, lr=1e38, epochs=5)


def test_the_epoch_that_diverged_is_reported_with_the_error_never_to_the_hook(mnist_5k):
    seen = []
    torch.manual_seed(1)
    model = MLP(784, [50], 10)
    with pytest.raises(Diverged) as diverged:
        fit(
            model,
            LOSSES["softmax_ce"],
            torch.optim.SGD(model.parameters(), lr=1e38),
            mnist_5k,
            epochs=3,
            batch_size=100,
            generator=torch.Generator(),
            on_epoch=seen.append,
        )
    assert seen == []  # the hook checkpoints: a diverged model must never reach it
    assert diverged.value.epoch["epoch"] == 1 and math.isnan(diverged.value.epoch["train_loss"])
