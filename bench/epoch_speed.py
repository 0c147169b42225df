"""Epoch speed on full MNIST: mlp_sweep's training loop beside the lecture's, in one process.

Both train the lecture's model (784 -> 100 sigmoid -> 10, N(0, 0.1) weights, zero biases) with
SGD lr 0.1, batch 100, softmax + cross-entropy, from the same seed, and both make the lecture's
full pass over the training set after every epoch (its loss and accuracy). They differ in how
batches reach the model:

- lecture: ``torchvision.datasets.MNIST`` with ``ToTensor``, a ``DataLoader(batch_size=100,
  shuffle=True)``, images converted one by one, every epoch;
- mlp_sweep: the data set as one float tensor on the device, batches as shuffled index slices
  (``mlp_sweep.train.train_epoch``), the training-set pass in large slices
  (``mlp_sweep.train.evaluate``).

Prints seconds per epoch of each, their ratio, the test accuracy each reached, the achieved
GFLOP/s against the machine's measured matrix-multiply peak, and the peak RSS; with
``--profile``, where one epoch of mlp_sweep's loop spends its time, by operator.

    python bench/epoch_speed.py --root ../shared/data --epochs 5 --profile
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mlp_sweep.data import load, torchvision_root
from mlp_sweep.model import MLP, softmax_ce
from mlp_sweep.train import evaluate, train_epoch

SEED = 1
HIDDEN = 100


class LectureMLP(torch.nn.Module):
    """The L09 notebook's model, as written there: it returns logits and probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.linear_1 = torch.nn.Linear(784, HIDDEN)
        self.linear_1.weight.detach().normal_(0.0, 0.1)
        self.linear_1.bias.detach().zero_()
        self.linear_out = torch.nn.Linear(HIDDEN, 10)
        self.linear_out.weight.detach().normal_(0.0, 0.1)
        self.linear_out.bias.detach().zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear_out(torch.sigmoid(self.linear_1(x)))
        return logits, F.softmax(logits, dim=1)


def lecture(root: str, epochs: int) -> tuple[list[float], float]:
    """Seconds of each epoch (training and the training-set pass), and the test accuracy."""
    to_tensor = transforms.ToTensor()
    train = datasets.MNIST(root, train=True, transform=to_tensor)
    test = datasets.MNIST(root, train=False, transform=to_tensor)
    train_loader = DataLoader(train, batch_size=100, shuffle=True)
    torch.manual_seed(SEED)
    model = LectureMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def full_pass(loader: DataLoader) -> tuple[float, float]:
        loss, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for features, targets in loader:
                logits, probas = model(features.view(-1, 784))
                loss += F.cross_entropy(logits, targets, reduction="sum").item()
                correct += (probas.argmax(1) == targets).sum().item()
                n += len(targets)
        return loss / n, correct / n

    seconds = []
    for _ in range(epochs):
        tic = time.perf_counter()
        model.train()
        for features, targets in train_loader:
            logits, _ = model(features.view(-1, 784))
            cost = F.cross_entropy(logits, targets)
            optimizer.zero_grad()
            cost.backward()
            optimizer.step()
        model.eval()
        full_pass(train_loader)
        seconds.append(time.perf_counter() - tic)
    return seconds, full_pass(DataLoader(test, batch_size=100))[1]


def mlp_sweep(root: str, epochs: int, compile: bool = False) -> tuple[list[float], float]:
    """The same, through mlp_sweep's data and training functions (with ``compile``, on the
    model as ``torch.compile`` makes it; the first epoch, which compiles, is not counted)."""
    splits = load("mnist", device=torch.device("cpu"), val_size=0, root=root)
    torch.manual_seed(SEED)
    model = MLP(784, [HIDDEN], 10, init_std=0.1)
    if compile:
        model = torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(SEED)
    seconds = []
    for _ in range(epochs):
        tic = time.perf_counter()
        train_epoch(model, softmax_ce, optimizer, splits.train, 100, generator)
        evaluate(model, softmax_ce, splits.train)
        seconds.append(time.perf_counter() - tic)
    return seconds, evaluate(model, softmax_ce, splits.test)[1]


def epoch_gflop(n: int = 60_000) -> float:
    """Multiply-adds of an epoch, counted as 2 FLOP each: forward and weight gradients of both
    layers and the input gradient of the output layer while training, then one forward pass
    for the training-set loss."""
    forward = 2 * n * (784 * HIDDEN + HIDDEN * 10)
    backward = 2 * n * (784 * HIDDEN + HIDDEN * 10) + 2 * n * HIDDEN * 10
    return (2 * forward + backward) / 1e9


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a large float32 matrix product with torch's default threads (the best of
    ``repeats``, as the machine allows at its best)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - tic)
    return 2 * size**3 / best / 1e9


def profile_epoch(root: str) -> None:
    """torch.profiler's table of one epoch of mlp_sweep's training loop, by operator."""
    from torch.profiler import ProfilerActivity, profile

    splits = load("mnist", device=torch.device("cpu"), val_size=0, root=root)
    model = MLP(784, [HIDDEN], 10, init_std=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(SEED)
    train_epoch(model, softmax_ce, optimizer, splits.train, 100, generator)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_epoch(model, softmax_ce, optimizer, splits.train, 100, generator)
    ops = prof.key_averages()
    print(ops.table(sort_by="self_cpu_time_total", row_limit=12))
    total = sum(op.self_cpu_time_total for op in ops)
    gemm = sum(op.self_cpu_time_total for op in ops if op.key in ("aten::addmm", "aten::mm"))
    loss_pass = 2 * 60_000 * (784 * HIDDEN + HIDDEN * 10) / 1e9  # GFLOP of one forward pass
    share = gemm / total
    print(
        f"matrix products: {share:.0%} of the profiled epoch, at "
        f"{(epoch_gflop() - loss_pass) / (gemm / 1e6):.0f} GFLOP/s; the rest: {1 - share:.0%}"
    )
    tic = time.perf_counter()
    evaluate(model, softmax_ce, splits.train)
    seconds = time.perf_counter() - tic
    print(f"training-set pass alone: {seconds:.3f} s, {loss_pass / seconds:.0f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="../shared/data", help="folder holding MNIST/raw")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile one epoch")
    parser.add_argument(
        "--compile", action="store_true", help="also time mlp_sweep's loop on a compiled model"
    )
    args = parser.parse_args()
    root = torchvision_root("mnist", args.root)  # extracted into mlp_sweep's cache if gzipped

    ours, ours_acc = mlp_sweep(root, args.epochs)
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    theirs, theirs_acc = lecture(root, args.epochs)
    rss_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak = matmul_peak()

    # The first epoch pays for warm-up (allocations, thread pools); the others are typical.
    ours_s = sum(ours[1:]) / max(1, len(ours) - 1) if len(ours) > 1 else ours[0]
    theirs_s = sum(theirs[1:]) / max(1, len(theirs) - 1) if len(theirs) > 1 else theirs[0]
    work = epoch_gflop()
    print(f"device cpu, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.epochs} epochs each, work per epoch {work:.1f} GFLOP")  # fmt: skip
    print(f"matrix-multiply peak (2048x2048 float32): {peak:.1f} GFLOP/s")
    print(f"{'loop':<10} {'s/epoch':>8} {'GFLOP/s':>8} {'of peak':>8} {'test acc':>9}")
    for name, s, acc in (("lecture", theirs_s, theirs_acc), ("mlp_sweep", ours_s, ours_acc)):
        print(f"{name:<10} {s:8.3f} {work / s:8.1f} {work / s / peak:8.0%} {acc:9.4f}")
    print(f"speed-up: {theirs_s / ours_s:.1f}x; test accuracy difference "
          f"{abs(ours_acc - theirs_acc) * 100:.2f} points")  # fmt: skip
    print(f"peak RSS: {rss_ours:.0f} MB after the mlp_sweep loop, {rss_all:.0f} MB after both")
    if args.profile:
        profile_epoch(root)
    if args.compile:
        compiled = mlp_sweep(root, args.epochs, compile=True)[0][1:]
        print(f"mlp_sweep with torch.compile: {sum(compiled) / len(compiled):.3f} s/epoch")


if __name__ == "__main__":
    main()
