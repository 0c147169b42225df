"""Where the test suite's CPU goes: each test's CPU seconds, its own (in the pytest worker
that runs it) and its children's (the commands it starts, and theirs once they are waited
for), summed by test file.

    python bench/suite_cpu.py                  # the default suite, as `python -m pytest` runs it
    python bench/suite_cpu.py tests/test_search.py -n 0

Runs pytest with this file as a plugin (``-p suite_cpu``) and any arguments given, then prints
the totals, a table by file and the costliest tests. CPU seconds, not wall seconds: the suite
runs on every core, so what it costs in all, and where, is what bounds its wall time. (A
session-scoped fixture is counted in the first test that uses it.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
OUT = "SUITE_CPU_DIR"  # the environment variable naming the folder the workers write to


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


# The plugin: each worker (or the one process, without xdist) writes its tests' rows.
_rows: list[tuple[str, float, float, float]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # type: ignore[no-untyped-def]
    own, theirs, wall = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.time()
    yield
    _rows.append(
        (
            item.nodeid,
            _cpu(resource.RUSAGE_SELF) - own,
            _cpu(resource.RUSAGE_CHILDREN) - theirs,
            time.time() - wall,
        )
    )


def pytest_sessionfinish(session):  # type: ignore[no-untyped-def]
    if os.environ.get(OUT):
        name = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (Path(os.environ[OUT]) / f"{name}.json").write_text(json.dumps(_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=15, help="the costliest tests listed")
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as out:
        env = {
            **os.environ,
            OUT: out,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        }
        started, before = time.time(), _cpu(resource.RUSAGE_CHILDREN)
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "suite_cpu", *pytest_args],
            cwd=HERE.parent,
            env=env,
        )
        wall, cpu = time.time() - started, _cpu(resource.RUSAGE_CHILDREN) - before
        rows = [row for f in Path(out).glob("*.json") for row in json.loads(f.read_text())]
    if code not in (0, 1):  # 1: some tests failed, which is still a measure
        sys.exit(code)
    tests_own, tests_theirs = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(
        f"\n{len(rows)} tests, {wall:.0f} s wall: {cpu:.0f} CPU-s in all, of which the tests "
        f"took {tests_own:.0f} in the pytest workers and {tests_theirs:.0f} in the commands they "
        "started\n"
    )
    by_file: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for nodeid, own, theirs, seconds in rows:
        total = by_file[nodeid.split("::")[0]]
        total[0] += 1
        total[1] += own
        total[2] += theirs
        total[3] += seconds
    print("| file | tests | CPU-s in the worker | CPU-s in its commands | wall s |")
    print("|---|---|---|---|---|")
    for name, (n, own, theirs, seconds) in sorted(by_file.items(), key=lambda x: -sum(x[1][1:3])):
        if own + theirs >= 0.5:
            print(f"| {name} | {n:.0f} | {own:.1f} | {theirs:.1f} | {seconds:.1f} |")
    print(f"\nThe {args.top} costliest tests (CPU-s: worker + commands):")
    for nodeid, own, theirs, _ in sorted(rows, key=lambda r: -(r[1] + r[2]))[: args.top]:
        print(f"  {own + theirs:5.1f} = {own:4.1f} + {theirs:4.1f}  {nodeid}")


if __name__ == "__main__":
    main()
