"""Where parsed and extracted data sets are kept between processes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from mlp_sweep.records import atomic_write


def cache_path(cache_dir: str | None = None) -> Path:
    """Where extracted and parsed data sets are kept: ``cache_dir``, else
    ``$XDG_CACHE_HOME/mlp_sweep``, else ``~/.cache/mlp_sweep``."""
    if cache_dir:
        return Path(cache_dir).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlp_sweep"


def resolve(path: str | Path) -> Path:
    """A data file's path: a relative one from the folder run.py started in, even when the
    job runs in its run folder (``hydra.job.chdir=true``)."""
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(str(Path(path).expanduser())))


def content_hash(path: str | Path, cache_dir: str | None = None) -> str:
    """The SHA-256 of a file's bytes. Remembered, as git's index does, by the file's path,
    size, modification and change times and inode in ``hashes.json`` of the cache folder: a
    large file is read again only when one of them changes. Raises OSError if the file cannot
    be read.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "t.csv").write_text("a,b\\n1,2\\n")
    >>> content_hash(folder / "t.csv", cache_dir=str(folder))[:12]
    '492d5ea49605'
    """
    file = resolve(path).resolve()
    stat = file.stat()
    # The change time too, as git's index keeps it: a copy that puts back the old
    # modification time (cp -p, rsync -t) cannot put back the change time.
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    index_file = cache_path(cache_dir) / HASHES_FILE
    index = _read_index(index_file)
    known = index.get(str(file))
    if known and known.get("stat") == stamp:
        return known["sha256"]
    digest = hashlib.sha256()
    with file.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    index[str(file)] = {"stat": stamp, "sha256": digest.hexdigest()}
    with contextlib.suppress(OSError):  # a read-only cache folder: hash again next time
        index_file.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(index)
        atomic_write(index_file, lambda tmp: tmp.write_text(text))
    return digest.hexdigest()


HASHES_FILE = "hashes.json"  # path -> size, mtime and SHA-256 of the data files hashed


def _read_index(path: Path) -> dict[str, dict]:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}
