"""K MLPs trained as one: stacked parameters and batched matrix products.

Each member is a real :class:`~mlp_sweep.model.MLP` whose parameters are views into stacked
tensors (K x out x in per layer, padded to the widest member), so one ``baddbmm`` serves K
models. Members keep their own ``torch.optim`` optimizers over those views: after the
stacked backward each view's ``.grad`` is the matching slice of the stacked gradient. The
members' optimizers of one class then step as one (:func:`one_step`): one optimizer of that
class over their parameter groups and their own state, so each member is updated with its own
settings by one ``step()`` rather than K of them (on a GPU, K = 64: 3.1 s an epoch instead of
4.3 s).

A padded unit lies outside every member's view: its weights stay zero, so it adds
``activation(0) * 0 = 0`` to the next layer, and a member computes exactly its own network.

>>> import torch
>>> from mlp_sweep.model import MLP
>>> torch.manual_seed(0) and None
>>> a, b = MLP(4, 3, 2, init_std=0.1), MLP(4, 5, 2, init_std=0.1)
>>> x = torch.rand(6, 4)
>>> expected = torch.stack([a(x), b(x)])
>>> stack = Stack([a, b], "sigmoid", [torch.optim.SGD(m.parameters()) for m in (a, b)])
>>> torch.allclose(stack.forward(x.expand(2, 6, 4)), expected, atol=1e-6)
True
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, MutableMapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlp_sweep.data import Split
from mlp_sweep.model import MLP
from mlp_sweep.schedule import Schedule
from mlp_sweep.train import EVAL_BATCH

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


def member_losses(name: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's mean loss, as :data:`mlp_sweep.model.LOSSES` computes it for one model:
    logits (K, B, C), targets (K, B) -> (K,)."""
    if name == "softmax_ce":
        return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(1)
    onehot = F.one_hot(targets, logits.shape[2]).to(logits.dtype)
    return F.mse_loss(torch.sigmoid(logits), onehot, reduction="none").mean((1, 2))


def one_step(optimizers: list[torch.optim.Optimizer]) -> list[torch.optim.Optimizer]:
    """One optimizer per optimizer class among ``optimizers``, over their parameter groups
    (the same group dicts, so a schedule that sets a member's ``lr`` sets it here) and their
    own state (read and written in each member's optimizer): its ``step()`` is every member's
    step, done by the class's own code.

    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> members = [torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9),
    ...            torch.optim.SGD(b.parameters(), lr=0.5, momentum=0.9)]
    >>> [len(o.param_groups) for o in one_step(members)]
    [2]
    """
    by_class: dict[type, list[torch.optim.Optimizer]] = {}
    for optimizer in optimizers:
        by_class.setdefault(type(optimizer), []).append(optimizer)
    steppers = []
    for cls, members in by_class.items():
        # Every setting a step reads is in the groups; the constructor gets the first
        # member's defaults that it takes (AdamW's hold `decoupled_weight_decay`, which its
        # constructor sets itself and does not take).
        takes = inspect.signature(cls).parameters
        defaults = {k: v for k, v in members[0].defaults.items() if k in takes}
        stepper = cls([g for m in members for g in m.param_groups], **defaults)
        stepper.state = _MemberStates(  # type: ignore[assignment]
            {p: m for m in members for g in m.param_groups for p in g["params"]}
        )
        steppers.append(stepper)
    return steppers


class _MemberStates(MutableMapping):
    """An optimizer's per-parameter state, kept in the optimizer of the member that owns each
    parameter (looked up at each access: loading a checkpoint replaces a member's state)."""

    def __init__(self, owners: dict[torch.Tensor, torch.optim.Optimizer]) -> None:
        self._owners = owners

    def __getitem__(self, param: torch.Tensor) -> Any:
        return self._owners[param].state[param]

    def __setitem__(self, param: torch.Tensor, value: Any) -> None:
        self._owners[param].state[param] = value

    def __delitem__(self, param: torch.Tensor) -> None:
        del self._owners[param].state[param]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (p for p, owner in self._owners.items() if p in owner.state)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Stack:
    """The parameters of ``models`` (MLPs with the same number of layers) stacked, their own
    parameters turned into views of the stack, each trained by its own optimizer in
    ``optimizers``; :meth:`keep` drops members between epochs."""

    def __init__(
        self, models: list[MLP], activation: str, optimizers: list[torch.optim.Optimizer]
    ) -> None:
        self.models = models
        self.optimizers = optimizers
        self.activation = _ACTIVATIONS[activation]
        for model in models:
            model.register_state_dict_post_hook(_own_storage)
        self._restack()

    def __len__(self) -> int:
        return len(self.models)

    def keep(self, indices: list[int]) -> None:
        """Go on with the members at ``indices`` only, in a stack as wide as they need."""
        self.models = [self.models[i] for i in indices]
        self.optimizers = [self.optimizers[i] for i in indices]
        if self.models:
            self._restack()

    def _restack(self) -> None:
        layers = [_linears(m) for m in self.models]
        device = layers[0][0].weight.device
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        for depth in range(len(layers[0])):
            out = max(ls[depth].out_features for ls in layers)
            inp = max(ls[depth].in_features for ls in layers)
            weight = torch.zeros(len(layers), out, inp, device=device)
            bias = torch.zeros(len(layers), out, device=device)
            for k, ls in enumerate(layers):
                lin = ls[depth]
                o, i = lin.weight.shape
                weight[k, :o, :i] = lin.weight.detach()
                bias[k, :o] = lin.bias.detach()
                # The member's own parameter objects (which its optimizer holds) now live
                # in the stack; only their storage changes.
                lin.weight.data = weight[k, :o, :i]
                lin.bias.data = bias[k, :o]
            self.weights.append(weight.requires_grad_())
            self.biases.append(bias.requires_grad_())
        self._views = [
            [(lin.weight, lin.bias) for lin in ls] for ls in layers
        ]  # per member, per layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, C) of every member for its own inputs ``x`` (K, B, features)."""
        h = x
        last = len(self.weights) - 1
        for depth, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if depth < last:
                h = self.activation(h)
        return h

    def train_epoch(
        self,
        loss_name: str,
        data: Split,
        batch_size: int,
        generators: list[torch.Generator],
        schedules: list[Schedule | None] | None = None,
    ) -> tuple[list[float], list[float]]:
        """One pass over ``data``, each member in its own random order drawn from its own
        generator as :func:`mlp_sweep.train.train_epoch` draws it, and its learning-rate
        schedule stepped after each batch if it steps so; each member's mean batch loss and
        accuracy. Nothing waits for the device inside the epoch."""
        stepping = [s for s in schedules or [] if s is not None]
        # Built each epoch from the members' current groups (a checkpoint loaded into a
        # member's optimizer replaces them).
        steppers = one_step(self.optimizers)
        n = len(data)
        device = data.x.device
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(
            device, non_blocking=True
        )
        k = len(self)
        loss_sum = torch.zeros(k, device=device)
        hits = torch.zeros(k, dtype=torch.int64, device=device)
        leaves = [*self.weights, *self.biases]
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]
            x, y = data.x[idx], data.y[idx]
            logits = self.forward(x)
            losses = member_losses(loss_name, logits, y)
            grads = torch.autograd.grad(losses.sum(), leaves)
            self._set_grads(grads)
            for stepper in steppers:
                stepper.step()
            for schedule in stepping:
                schedule.after_batch()
            loss_sum += losses.detach() * idx.shape[1]
            hits += (logits.detach().argmax(2) == y).sum(1)
        return _means(loss_sum, hits, n)

    def _set_grads(self, grads: tuple[torch.Tensor, ...]) -> None:
        depth = len(self.weights)
        for k, views in enumerate(self._views):
            for d, (weight, bias) in enumerate(views):
                o, i = weight.shape
                weight.grad = grads[d][k, :o, :i]
                bias.grad = grads[depth + d][k, :o]

    @torch.inference_mode()
    def evaluate(self, loss_name: str, data: Split) -> tuple[list[float], list[float]]:
        """Each member's mean loss and accuracy over ``data`` (NaN for an empty split)."""
        n, k = len(data), len(self)
        if n == 0:
            return [float("nan")] * k, [float("nan")] * k
        loss_sum = torch.zeros(k, device=data.x.device)
        hits = torch.zeros(k, dtype=torch.int64, device=data.x.device)
        for start in range(0, n, EVAL_BATCH):
            x, y = data.x[start : start + EVAL_BATCH], data.y[start : start + EVAL_BATCH]
            logits = self.forward(x.expand(k, *x.shape))
            targets = y.expand(k, *y.shape)
            loss_sum += member_losses(loss_name, logits, targets) * len(y)
            hits += (logits.argmax(2) == targets).sum(1)
        return _means(loss_sum, hits, n)


def _means(loss_sum: torch.Tensor, hits: torch.Tensor, n: int) -> tuple[list[float], list[float]]:
    """Read once per epoch, divided as the solo loop divides."""
    return [s / n for s in loss_sum.tolist()], [h / n for h in hits.tolist()]


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _own_storage(module: nn.Module, state: dict, prefix: str, metadata: dict) -> None:
    """Give each tensor of a member's state_dict storage of its own: ``torch.save`` of a view
    would write the whole stack into the member's model.pt and checkpoint.pt."""
    for name in list(state):
        state[name] = state[name].clone()
