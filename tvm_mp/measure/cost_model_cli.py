"""``tvm-mp cost-model collect | train | eval | default``: measure into a records file, train and evaluate models.

Command line (``tvm-mp cost-model ...``, or ``python -m tvm_mp.measure.cost_model_cli ...``)::

    collect  --records docs/data/host_kernels.jsonl [--budget-s 840] [--seed 0] [--source host|accel]
    train    --records docs/data/host_kernels.jsonl [--records tuned.jsonl ...] --out model.json [--seed 0]
    eval     --records docs/data/host_kernels.jsonl [--model model.json] [--report-dir docs/cost_model_eval]
    default  --records docs/data/host_kernels.jsonl      (retrains tvm_mp/cost_models/default_model.json)

``--records`` is always given: no path is read relative to the working directory by default. ``train``, ``eval``
and ``default`` take it more than once: the files' records are read together (a workload in several files keeps
the last file's record), e.g. the shipped host records plus the records ``tvm-mp tune`` measured on a device
(``tvm-mp tune --records tuned.jsonl``), so a model learns that device's kernels. The measuring is
:mod:`tvm_mp.measure.collect`, the fitting and evaluation :mod:`tvm_mp.cost_models.train`; this module reads the
records file and ties the two together.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .._files import write_atomic
from ..cost_models.base import CostModelError
from ..cost_models.train import (
    evaluate_model_file,
    evaluate_records,
    report_table,
    scatter_plot,
    train_model,
    write_default,
)
from ..cost_models.xgb import DEFAULT_QUANTILE_ROUNDS, DEFAULT_ROUNDS
from .collect import collect, collect_accel, retime
from .records import load_records, normalize_latency


def add_commands(sub, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``collect | train | eval | default`` to an argparse sub-parser group (``tvm-mp cost-model`` uses it);
    ``parents``: parsers whose options every command also takes (the CLI's -v/-q)."""

    def command(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                              epilog=f"example:\n  {example}", parents=list(parents),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    c = command("collect", "measure kernels on this host into a records file",
                "tvm-mp cost-model collect --records host_kernels.jsonl --budget-s 600")
    c.add_argument("--records", type=Path, required=True, help="records file (appended; resumable)")
    c.add_argument("--budget-s", type=float, default=840.0, help="stop starting measurements after this long")
    c.add_argument("--seed", type=int, default=0, help="seed of the random layer shapes")
    c.add_argument("--random-layers", type=int, default=None,
                   help="random layer shapes besides the models' (default 260 host, 120 accelerator)")
    c.add_argument("--source", choices=["host", "accel"], default="host",
                   help="host: time kernels here; accel: run the accelerator simulator")
    c.add_argument("--passes", type=int, default=2, help="host: time every workload this many times (min kept)")
    t = command("train", "train an XGBoost model on records files (e.g. with the records tvm-mp tune wrote)",
                "tvm-mp cost-model train --records host_kernels.jsonl --records tuned.jsonl --out model.json")
    t.add_argument("--records", type=Path, required=True, action="append",
                   help="records file to train on (repeat to add files, e.g. `tvm-mp tune --records` output)")
    t.add_argument("--out", type=Path, required=True, help="where to write the trained model (JSON)")
    e = command("eval", "held-out evaluation (or evaluate a trained model with --model)",
                "tvm-mp cost-model eval --records host_kernels.jsonl --report-dir eval/")
    e.add_argument("--records", type=Path, required=True, action="append",
                   help="records file to evaluate on (repeat to add files)")
    e.add_argument("--model", type=Path, default=None, help="evaluate this trained model instead of cross-training")
    e.add_argument("--default-model", action="store_true", help="evaluate the shipped default model")
    e.add_argument("--split", choices=["shapes", "models", "both"], default="both",
                   help="hold out unseen layer shapes, unseen models, or both (default both)")
    e.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    e.add_argument("--k", type=int, default=3, help="top-k used by the ranking metrics (default 3)")
    e.add_argument("--report-dir", type=Path, default=None, help="write table.md, metrics.json, scatter.png here")
    d = command("default", "retrain tvm_mp/cost_models/default_model.json",
                "tvm-mp cost-model default --records docs/data/host_kernels.jsonl")
    d.add_argument("--records", type=Path, required=True, action="append",
                   help="records file to train the shipped model on (repeat to add files)")
    for p in (t, e, d):
        p.add_argument("--seed", type=int, default=0, help="seed of the training")
        p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                       help=f"boosting rounds of the mean model (default {DEFAULT_ROUNDS})")
        p.add_argument("--quantile-rounds", type=int, default=DEFAULT_QUANTILE_ROUNDS,
                       help=f"boosting rounds of the quantile models (default {DEFAULT_QUANTILE_ROUNDS})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tvm-mp cost-model",
                                     description="Collect measurements, train and evaluate tvm-mp cost models.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def _existing_records(path: Path) -> Path:
    if Path(path).is_dir():
        raise CostModelError(f"records path {path} is a directory: give the records file (.jsonl) in it")
    if not Path(path).is_file():
        raise CostModelError(f"records file {path} does not exist: collect some first "
                             f"(tvm-mp cost-model collect --records {path})")
    return path


def _read_records(paths) -> list:
    """The records of one or more files, read together: a workload in several files keeps the last file's record;
    host timings put on one CPU-speed scale across all of them (:func:`~tvm_mp.measure.records.normalize_latency`)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    merged: dict = {}
    for path in paths:
        for record in load_records(_existing_records(path), normalize=False):
            merged.pop(record.key, None)
            merged[record.key] = record
    return normalize_latency(list(merged.values()))


def run(args: argparse.Namespace) -> int:
    """Run one parsed command (raises :class:`CostModelError` on a user error)."""
    if args.command == "collect":
        if args.source == "accel":
            collect_accel(args.records, args.budget_s, args.seed, args.random_layers or 120)
        else:
            collect(args.records, args.budget_s, args.seed, args.random_layers or 260)
            if args.passes > 1:
                retime(args.records, args.passes, args.budget_s, args.seed + 1)
    elif args.command == "train":
        model = train_model(_read_records(args.records), args.seed, args.rounds, args.quantile_rounds)
        path = model.save(args.out)
        unit = model.info.get("unit", "ms")
        predicts = "ms" if unit == "ms" else f"{unit}; compile --cost-model reads it as the ARM latency proxy"
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {model.info['records']} records; predicts "
              f"{predicts})")
    elif args.command == "default":
        paths = args.records if isinstance(args.records, list) else [args.records]
        path = write_default(_read_records(paths), _existing_records(paths[0]), args.seed, args.rounds,
                             args.quantile_rounds)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    elif args.command == "eval":
        records = _read_records(args.records)
        if args.model is not None or args.default_model:
            table, data = evaluate_model_file(args.model, records, args.k)
            results = []
        else:
            splits = ("shapes", "models") if args.split == "both" else (args.split,)
            results = evaluate_records(records, args.seed, args.folds, args.rounds, args.quantile_rounds, splits)
            table, data = report_table(results, args.k)
        print(table)
        if args.report_dir is not None:
            args.report_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(args.report_dir / "table.md", table + "\n")
            write_atomic(args.report_dir / "metrics.json", json.dumps(data, indent=2) + "\n")
            if results:
                scatter_plot(results, args.report_dir / "scatter.png")
            print(f"wrote {args.report_dir}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CostModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
