"""The multilayer perceptron and the two output/loss variants of the lecture."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MLP(nn.Module):
    """Fully connected layers with an activation between them; returns logits.

    With ``init_std`` set, every Linear weight is re-drawn from N(0, init_std) and every bias
    set to 0 right after PyTorch's default init, as in the lecture notebooks.

    >>> model = MLP(784, 100, 10, init_std=0.1)  # or [100]; [256, 128] for two layers
    >>> model(torch.zeros(2, 784)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_features: int,
        hidden: int | Sequence[int],
        num_classes: int,
        activation: str = "sigmoid",
        init_std: float | None = 0.1,
    ) -> None:
        super().__init__()
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        widths = [num_features, *hidden, num_classes]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            linear = nn.Linear(n_in, n_out)
            # Re-drawn layer by layer, right after each is built, so the random stream
            # matches the notebooks draw for draw.
            if init_std is not None:
                with torch.no_grad():
                    linear.weight.normal_(0.0, init_std)
                    linear.bias.zero_()
            layers.append(linear)
            if i < len(hidden):
                layers.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def count_params(model: nn.Module) -> int:
    """The number of trainable parameters.

    >>> count_params(MLP(784, [100], 10))
    79510
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sigmoid_mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sigmoid on the outputs, MSE against one-hot targets, mean over all N x C elements."""
    onehot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    return F.mse_loss(torch.sigmoid(logits), onehot)


def softmax_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on logits; the softmax is implicit in it."""
    return F.cross_entropy(logits, targets)


# Both variants predict the argmax of the logits: sigmoid and softmax keep its position.
LOSSES: dict[str, LossFn] = {"softmax_ce": softmax_ce, "sigmoid_mse": sigmoid_mse}
