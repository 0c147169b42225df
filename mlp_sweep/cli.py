"""``mlp-sweep``: commands that work on finished (or interrupted) sweeps, without Hydra.

mlp-sweep collect outputs/sweeps/A            # (re)write A's summary files
mlp-sweep compare outputs/sweeps/A outputs/sweeps/B --metric val_loss
mlp-sweep predict outputs/runs/R new_rows.csv --out predictions.csv
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from mlp_sweep import collect, drawing, records
from mlp_sweep.errors import one_line

_SUMMARY_FILES = f"{records.SUMMARY_CSV}, {records.SUMMARY_MD}, {records.SUMMARY_PNG}"


def run() -> NoReturn:
    """The ``mlp-sweep`` command: :func:`main`, then the process ends with its exit status,
    its objects left uncollected (as ``python run.py`` does: see ``app.run``)."""
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    if args.command is _predict:
        return _predict(args)
    missing = [str(d) for d in args.dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    overlap = _overlap(args.dirs)
    if overlap:
        print(f"error: {overlap}; give each folder once", file=sys.stderr)
        return 2
    try:
        return args.command(args)
    except ValueError as err:  # an unknown --metric or --sort, named with what is allowed
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


def _overlap(dirs: Sequence[Path]) -> str | None:
    """Why some runs would be counted twice: a folder given twice, or inside another."""
    resolved = [Path(d).resolve() for d in dirs]
    for i, a in enumerate(resolved):
        for j, b in enumerate(resolved):
            if i < j and a == b:
                return f"{dirs[i]} is given twice"
            if i != j and a != b and a.is_relative_to(b):
                return f"{dirs[i]} lies inside {dirs[j]}"
    return None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be a whole number >= 1")
    return value


def _collect(args: argparse.Namespace) -> int:
    (sweep_dir,) = args.dirs
    if (refused := _not_one_sweep(sweep_dir)) is not None:
        print(f"error: {sweep_dir} {refused}", file=sys.stderr)
        return 2
    _, text = collect.write_summary(sweep_dir, args.metric)
    drawing.draw_missing(sweep_dir)  # a run's curves.png lost with the sweep's drawing process
    if not text:
        print(f"error: no run folders under {sweep_dir}", file=sys.stderr)
        return 1
    print(text)
    print(f"\nwrote {_SUMMARY_FILES} in {sweep_dir}")
    return 0


def _not_one_sweep(folder: Path) -> str | None:
    """Why ``folder`` is no sweep's own folder, whose summary `collect` may write: a run's
    folder, or one holding several sweeps (a grid's folder holds its multirun.yaml, a
    search's runs name their study) or runs of no sweep."""
    runs = collect.run_dirs(folder)
    if folder in runs:
        return (
            "is a run's folder: collect writes the summary of a sweep's folder; "
            f"`mlp-sweep compare {folder}` shows the run"
        )
    several = f"collect writes one sweep's summary, in its folder; `mlp-sweep compare {folder}`"
    inner = sorted(p.parent for p in folder.rglob("multirun.yaml") if p.parent != folder)
    if inner:
        names = ", ".join(p.relative_to(folder).as_posix() for p in inner)
        return f"holds the sweeps {names}: {several} ranks them all"
    if (folder / "multirun.yaml").is_file():
        return None  # a grid's folder: its runs are its own
    studies = set()
    for run in runs:
        try:
            trial = records.read_metrics(run).get("trial")
        except ValueError:
            continue  # collect lists it as incomplete
        studies.add(trial.get("study") if isinstance(trial, dict) else None)
    if None in studies:
        return f"holds runs of no sweep: {several} ranks them"
    if len(studies) > 1:
        return f"holds the studies {', '.join(sorted(studies))}: {several} ranks them all"
    return None


def _compare(args: argparse.Namespace) -> int:
    blocked = args.out and next((p for p in (args.out, *args.out.parents) if p.is_file()), None)
    if blocked:
        print(f"error: --out {args.out} is not a folder: {blocked} is a file", file=sys.stderr)
        return 2
    if args.out and args.out.is_dir() and collect.run_dirs(args.out):
        print(
            f"error: --out {args.out} holds runs, whose summary files are their own; "
            "choose a folder of its own for the comparison",
            file=sys.stderr,
        )
        return 2
    c = collect.collect(args.dirs, args.metric, histories=args.out is not None)  # for the figure
    if c.runs.empty:
        print(f"error: no run folders under {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 1
    title = "Comparison of " + ", ".join(str(d) for d in args.dirs)
    text = collect.to_markdown(c, title, sort=args.sort, top=args.top)
    print(text)
    if args.out:
        try:
            _write_comparison(c, args, text)
        except OSError as err:
            where = err.filename or args.out
            print(
                f"error: --out {args.out} cannot be written: {where}: {err.strerror}",
                file=sys.stderr,
            )
            return 1
        print(f"\nwrote {_SUMMARY_FILES} in {args.out}")
    return 0


def _write_comparison(c: collect.Collection, args: argparse.Namespace, text: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    records.atomic_write(args.out / records.SUMMARY_MD, lambda tmp: tmp.write_text(text))
    table = collect.ranked(c, args.sort)
    records.atomic_write(args.out / records.SUMMARY_CSV, lambda tmp: table.to_csv(tmp, index=False))
    collect.write_plot(c, args.out / records.SUMMARY_PNG)


def _predict(args: argparse.Namespace) -> int:
    # Imported here: collect and compare never import torch.
    from mlp_sweep.data import table
    from mlp_sweep.errors import BadInput
    from mlp_sweep.predict import predict

    if args.out is not None and args.out.suffix.lower() not in table.READERS:
        print(
            f"error: --out {args.out} is invalid: written by its extension; allowed: "
            f"{', '.join(table.READERS)}",
            file=sys.stderr,
        )
        return 2
    if not (args.run / records.METRICS_FILE).is_file():
        print(
            f"error: RUN={args.run} is not a run folder (no {records.METRICS_FILE})",
            file=sys.stderr,
        )
        return 2
    try:
        out = predict(args.run, args.table)
    except (BadInput, ValueError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    if args.out is None:
        try:
            out.to_csv(sys.stdout, index=False)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has gone, as Python's docs handle it
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        return 0
    try:
        records.atomic_write(args.out, lambda tmp: table.write(out, tmp, args.out))
    except OSError as err:
        print(f"error: --out {args.out} cannot be written: {err.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {len(out)} predictions to {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlp-sweep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    metric = {
        "choices": [*records.METRICS, *records.COSTS],
        "help": "rank by this metric (default: the runs' objective, the first of several)",
    }

    p = sub.add_parser("collect", help="write summary.csv/.md/.png into a sweep folder")
    p.add_argument("dirs", nargs=1, type=Path, metavar="SWEEP_DIR")
    p.add_argument("--metric", **metric)
    p.set_defaults(command=_collect)

    p = sub.add_parser("compare", help="rank the runs of several sweeps or run folders together")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    p.add_argument("--metric", **metric)
    p.add_argument("--sort", help="sort the table by this column (default: the metric)")
    p.add_argument("--top", type=_positive, help="show only the best N runs")
    p.add_argument("--out", type=Path, help="also write summary files into this folder")
    p.set_defaults(command=_compare)

    p = sub.add_parser("predict", help="apply a run's model to the rows of a table")
    p.add_argument("run", type=Path, metavar="RUN", help="a run folder trained on a table")
    p.add_argument("table", type=Path, metavar="TABLE", help=".csv, .tsv, .parquet or .npz (X)")
    p.add_argument(
        "--out",
        type=Path,
        help="write the predictions here: .csv, .tsv or .parquet (default: stdout, CSV)",
    )
    p.set_defaults(command=_predict)
    return parser


if __name__ == "__main__":
    run()
