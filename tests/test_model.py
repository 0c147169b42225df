import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from mlp_sweep.model import LOSSES, MLP, sigmoid_mse, softmax_ce


def linears(model: MLP) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize(
    ("hidden", "widths"), [([100], [784, 100, 10]), ([256, 128], [784, 256, 128, 10])]
)
def test_layers_have_the_requested_widths(hidden, widths):
    model = MLP(784, hidden, 10)
    shapes = [(m.in_features, m.out_features) for m in linears(model)]
    assert shapes == list(itertools.pairwise(widths))
    assert model(torch.rand(5, 784)).shape == (5, 10)


def test_hidden_layers_use_the_configured_activation():
    model = MLP(784, [20, 20], 10, activation="relu")
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]


def test_init_std_redraws_weights_from_a_normal_and_zeroes_biases():
    torch.manual_seed(0)
    model = MLP(784, [500], 10, init_std=0.1)
    first, out = linears(model)
    assert first.weight.mean().item() == pytest.approx(0.0, abs=0.002)
    assert first.weight.std().item() == pytest.approx(0.1, rel=0.01)  # 392,000 draws
    assert out.weight.std().item() == pytest.approx(0.1, rel=0.05)
    assert all(torch.count_nonzero(m.bias) == 0 for m in (first, out))


def test_init_std_none_keeps_pytorchs_default_uniform_init():
    torch.manual_seed(0)
    first = linears(MLP(784, [100], 10, init_std=None))[0]
    bound = 1 / math.sqrt(784)  # kaiming_uniform(a=sqrt(5)) and the bias both use this bound
    assert first.weight.abs().max().item() <= bound
    assert first.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert torch.count_nonzero(first.bias) > 0


def test_same_seed_builds_the_same_weights():
    torch.manual_seed(1)
    a = MLP(784, [100], 10)
    torch.manual_seed(1)
    b = MLP(784, [100], 10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_sigmoid_mse_is_the_mean_over_all_n_times_c_elements():
    logits = torch.randn(4, 10)
    targets = torch.tensor([0, 3, 9, 3])
    onehot = torch.zeros(4, 10)
    onehot[torch.arange(4), targets] = 1
    expected = ((torch.sigmoid(logits) - onehot) ** 2).sum() / 40
    assert sigmoid_mse(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)


def test_softmax_ce_is_the_negative_log_softmax_of_the_target():
    logits = torch.randn(4, 10)
    targets = torch.tensor([1, 2, 3, 4])
    expected = -F.log_softmax(logits, dim=1)[torch.arange(4), targets].mean()
    assert softmax_ce(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("variant", sorted(LOSSES))
def test_both_losses_are_smaller_for_the_right_class(variant):
    targets = torch.tensor([2, 7])
    right = torch.full((2, 10), -5.0)
    right[torch.arange(2), targets] = 5.0
    wrong = right.roll(1, dims=1)
    assert LOSSES[variant](right, targets) < LOSSES[variant](wrong, targets)
