import gzip
import shutil
from pathlib import Path

import pytest
import torch

from mlp_sweep import data
from mlp_sweep.data import IDX_FILES, load
from mlp_sweep.errors import DataError

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_process_cache():
    data._load.cache_clear()


def test_mnist_5k_splits_into_3500_500_1000_stratified():
    s = load("mnist_5k", device=CPU, val_size=500)
    assert (len(s.train), len(s.val), len(s.test)) == (3500, 500, 1000)
    assert torch.bincount(s.val.y).tolist() == [50] * 10
    assert torch.bincount(s.test.y).tolist() == [100] * 10
    assert s.train.x.shape == (3500, 784) and s.train.x.dtype == torch.float32
    assert s.train.x.min() == 0.0 and s.train.x.max() == 1.0


def test_split_is_the_same_whatever_the_global_seed():
    torch.manual_seed(1)
    a = load("mnist_5k", device=CPU, val_size=500)
    data._load.cache_clear()
    torch.manual_seed(2)
    b = load("mnist_5k", device=CPU, val_size=500)
    assert a is not b
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)


def test_splits_do_not_share_images():
    s = load("mnist_5k", device=CPU, val_size=500)
    train = {x.numpy().tobytes() for x in s.train.x}
    assert not any(x.numpy().tobytes() in train for x in (*s.val.x, *s.test.x))


def test_a_data_set_is_loaded_once_per_process():
    assert load("mnist_5k", device=CPU, val_size=500) is load("mnist_5k", device=CPU, val_size=500)


def test_full_mnist_reads_gzipped_files_from_a_read_only_root(shared_data, tmp_path):
    before = sorted(p.name for p in (shared_data / "MNIST" / "raw").iterdir())
    s = load("mnist", device=CPU, val_size=0, root=str(shared_data), cache_dir=str(tmp_path))
    assert (len(s.train), len(s.val), len(s.test)) == (60000, 0, 10000)
    assert s.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the standard order
    assert s.train.x.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert s.train.x.std().item() == pytest.approx(0.3081, abs=1e-4)
    assert sorted(p.name for p in (shared_data / "MNIST" / "raw").iterdir()) == before
    assert len(list(tmp_path.rglob("train-images-idx3-ubyte"))) == 1


def test_validation_images_come_from_the_training_set_by_a_fixed_generator(shared_data, tmp_path):
    a = load("mnist", device=CPU, val_size=5000, root=str(shared_data), cache_dir=str(tmp_path))
    whole = load("mnist", device=CPU, val_size=0, root=str(shared_data), cache_dir=str(tmp_path))
    assert (len(a.train), len(a.val)) == (55000, 5000)
    assert torch.bincount(a.val.y, minlength=10).min() > 400  # random, so every class is there
    data._load.cache_clear()
    b = load("mnist", device=CPU, val_size=5000, root=str(shared_data), cache_dir=str(tmp_path))
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.val.x, b.val.x)
    assert torch.equal(torch.cat([a.train.y, a.val.y]).sort().values, whole.train.y.sort().values)


def test_fashion_mnist_loads_through_torchvision(shared_data, tmp_path):
    s = load(
        "fashion_mnist", device=CPU, val_size=5000, root=str(shared_data), cache_dir=str(tmp_path)
    )
    assert (len(s.train), len(s.test)) == (55000, 10000)
    assert torch.bincount(s.test.y).tolist() == [1000] * 10


def test_missing_files_without_download_name_the_root_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"data.root=.*MNIST/raw lacks .*data.download=true"):
        load("mnist", device=CPU, val_size=0, root=str(tmp_path))


def test_unset_root_is_an_error():
    with pytest.raises(DataError, match=r"data.root is not set"):
        load("mnist", device=CPU, val_size=0, root=None)


def test_val_size_beyond_the_training_set_is_an_error():
    with pytest.raises(DataError, match=r"data.val_size=4000 is invalid.* 4000 training images"):
        load("mnist_5k", device=CPU, val_size=4000)


def copy_raw(shared_data: Path, root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES:
        shutil.copy(shared_data / "MNIST" / "raw" / f"{name}.gz", raw / f"{name}.gz")
    return raw


def test_truncated_gzip_is_reported_as_corrupt(shared_data, tmp_path):
    raw = copy_raw(shared_data, tmp_path / "root")
    images = raw / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"cannot extract train-images-idx3-ubyte.gz.*corrupt"):
        load(
            "mnist",
            device=CPU,
            val_size=0,
            root=str(tmp_path / "root"),
            cache_dir=str(tmp_path / "c"),
        )


@pytest.mark.parametrize("damage", ["truncate", "bad_magic"])
def test_damaged_idx_files_are_reported_as_corrupt(shared_data, tmp_path, damage):
    raw = copy_raw(shared_data, tmp_path / "root")
    for name in IDX_FILES:  # uncompressed files are read in place
        (raw / name).write_bytes(gzip.decompress((raw / f"{name}.gz").read_bytes()))
    images = raw / "train-images-idx3-ubyte"
    content = images.read_bytes()
    images.write_bytes(
        content[: len(content) // 2] if damage == "truncate" else b"\0\0\0\0" + content[4:]
    )
    with pytest.raises(DataError, match=r"cannot read MNIST/raw.*corrupt or truncated"):
        load("mnist", device=CPU, val_size=0, root=str(tmp_path / "root"))
