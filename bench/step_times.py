"""Time named steps inside one run.py command (its arguments after --).

Each function given (``module:function`` or ``module:Class.method``) is wrapped with a
timer, then the command runs in this process as ``python run.py`` would run it:

    python bench/step_times.py mlp_sweep.stacked:Stack._restack mlp_sweep.job:complete \\
        -- -m 'hidden=range(16,528,16)' lr=0.05,0.1,0.2,0.5 init_std=0.01,0.1 epochs=1

Prints, when the command ends, each step's total seconds and number of calls, and with
``--each`` every call's milliseconds. The time is wall time, and a step's time includes the
steps it calls. A function is wrapped where it is named: a module that imported it by name
(``from mlp_sweep.config import hidden_sizes``) calls its own reference, so name it there
(``mlp_sweep.job:hidden_sizes``) to count those calls.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(name: str, each: bool, totals: dict[str, list[float]]) -> None:
    """Wrap the function ``module:Attr.path`` so that its calls are added up in ``totals``."""
    module, _, path = name.partition(":")
    *parents, attr = path.split(".")
    owner: Any = importlib.import_module(module)
    for parent in parents:
        owner = getattr(owner, parent)
    inner: Callable[..., Any] = getattr(owner, attr)
    calls = totals.setdefault(name, [])

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tic = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            calls.append(time.perf_counter() - tic)
            if each:
                print(f"{name}: {calls[-1] * 1e3:.1f} ms", file=sys.stderr)

    setattr(owner, attr, wrapper)


def report(totals: dict[str, list[float]]) -> None:
    for name, calls in totals.items():
        print(f"{sum(calls):8.3f} s {len(calls):6d} calls  {name}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="+", help="functions as module:Class.method")
    parser.add_argument("--each", action="store_true", help="print every call's time too")
    own = sys.argv[1:]
    split = own.index("--") if "--" in own else len(own)
    args = parser.parse_args(own[:split])  # run.py's arguments follow --
    arguments = own[split + 1 :]
    totals: dict[str, list[float]] = {}
    for name in args.steps:
        try:
            timed(name, args.each, totals)
        except (ImportError, AttributeError, ValueError) as err:
            parser.error(f"{name}: no such function ({err})")
    atexit.register(report, totals)  # run.py's end exits the process
    from mlp_sweep import app

    sys.argv = ["run.py", *arguments]
    app.run()


if __name__ == "__main__":
    main()
