"""How long a table takes to load from the cache in a fresh process, and its peak RSS.

    python bench/data_load.py                      # 1,000,000 rows x 50 columns, Parquet
    python bench/data_load.py --format csv         # the same table as a CSV
    python bench/data_load.py --rows 100000        # a smaller one

In a temporary folder: writes a table of ``--rows`` rows (49 float features and an integer
label of 10 classes), then, each in a new process, loads it as ``data=table`` would: first
parsing it (and filling the cache), then from the cache, ``--repeats`` times. Each line gives
the seconds of the load (content hash, mapping, split, tensors scaled on the CPU) and the
process's peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# What each child process runs: the load of a `data=table` run, timed, and its peak RSS.
CHILD = """
import json, resource, sys, time
import torch
from omegaconf import OmegaConf
from mlp_sweep import data
from mlp_sweep.data.cache import content_hash

path, cache = sys.argv[1], sys.argv[2]
tic = time.perf_counter()
cfg = OmegaConf.create({"name": "table", "path": path, "sha256": content_hash(path, cache),
    "target": "y", "features": None, "scale": "standard", "missing": "error",
    "val_size": 0.2, "test_size": None, "test_path": None, "test_sha256": None,
    "cache_dir": cache})
splits = data.load_data(cfg, torch.device("cpu"))
seconds = time.perf_counter() - tic
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_mb": rss, "train": list(splits.train.x.shape)}))
"""


def write_table(path: Path, rows: int, fmt: str) -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.normal(size=(rows, 49)).astype(np.float32), columns=[f"f{i}" for i in range(49)]
    )
    frame["y"] = rng.integers(0, 10, rows)
    if fmt == "csv":
        frame.to_csv(path, index=False, float_format="%.5g")
    else:
        frame.to_parquet(path)


def load(path: Path, cache: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(cache)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"table.{args.format}"
        tic = time.perf_counter()
        write_table(path, args.rows, args.format)
        size, took = path.stat().st_size / 2**20, time.perf_counter() - tic
        print(f"wrote {args.rows:,} rows x 50 columns, {size:.0f} MB in {took:.1f}s")
        first = load(path, Path(tmp) / "cache")
        print(f"parse and cache: {first['seconds']:.2f}s, peak RSS {first['rss_mb']:.0f} MB")
        for _ in range(args.repeats):
            again = load(path, Path(tmp) / "cache")
            print(f"from the cache:  {again['seconds']:.2f}s, peak RSS {again['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
