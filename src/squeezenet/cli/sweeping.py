"""``squeezenet sweep``: the paper's design-space exploration as a resumable, distributable study (``[sweep]``)."""

from __future__ import annotations

import argparse
import json
import re
import sys

from .args import add_data_root, add_json, positive_int, verb

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parameter_count(text: str) -> int:
    """``500k``, ``1.2M`` or ``800000``."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"a parameter count such as 500k, 1.2M or 800000, got {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()])


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seconds, got {text!r}") from None
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("-o", "--output", metavar="STUDY_DIR", help="new study folder (running the same command "
                      "again continues it)")
    what.add_argument("--resume", metavar="STUDY_DIR", help="continue a study, or join it as one more worker")
    what.add_argument("--report", metavar="STUDY_DIR", help="table, Pareto front, report.csv/json and plots of a study")
    p.add_argument("--data", help="'cifar10' or a folder with train/ and val/ or test/ (as for `squeezenet train`)")
    p.add_argument("--space", help="space file (YAML): metaparameters and their values, e.g. sweeps/cifar10-sr.yaml")
    p.add_argument("--mode", choices=("grid", "search"), default="grid",
                   help="grid: every point of the lists once; search: --trials points chosen by NSGA-II for top-1 "
                        "against parameters (ranges allowed)")
    p.add_argument("--trials", type=positive_int, help="search: how many trials the study runs")
    p.add_argument("--trial-budget", type=_positive_seconds, metavar="SECONDS",
                   help="each trial's training time budget (the schedule anneals within it)")
    p.add_argument("--max-params", type=parameter_count, metavar="N",
                   help="never train points above N parameters (500k, 1.2M); counted without building anything")
    p.add_argument("--prune", action="store_true", help="stop trials whose per-epoch top-1 is below the median")
    p.add_argument("--storage", metavar="URL", help="a database for the study (postgresql://user@host/db, "
                   "sqlite:///file.db) so workers on several machines share it; default: a journal file in STUDY_DIR")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    add_data_root(p)
    p.add_argument("--no-progress", action="store_true", help="one line per epoch instead of a progress bar")
    add_json(p, "--report: print the rows as JSON")


@verb("sweep", _sweep_arguments, extra="sweep")
def cmd_sweep(args: argparse.Namespace) -> int:
    """Explore SqueezeNet's design space (SR, pct3x3, bypass, any option or recipe key) on a dataset.

    Every trial is an ordinary `train` run folder inside STUDY_DIR. The study is Optuna's: a journal file in
    STUDY_DIR by default, or --storage URL for a database that workers on several machines join with
    `squeezenet sweep --resume STUDY_DIR --storage URL`. Kill it any time: running the command again keeps the
    finished trials and retries the killed one from its last checkpoint. Several workers started together split
    the trials; none is trained twice. --report prints the table and writes report.csv, report.json and
    Fig. 3-style plots (accuracy and size against SR / pct3x3, bypass variants, the Pareto front).
    """
    from ..common.dist import is_first_process
    from ..errors import SqueezeNetError
    from ..sweep import resume_sweep, start_sweep, sweep_report

    progress = False if args.no_progress else None
    if args.report:
        rows, lines, files = sweep_report(args.report, storage=args.storage)
        if args.json:
            from dataclasses import asdict

            print(json.dumps([asdict(r) for r in rows], indent=2))
        else:
            print("\n".join(lines))
            print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
        return 0
    if args.resume:
        done = resume_sweep(args.resume, storage=args.storage, progress_bar=bool(progress))
    else:
        if not args.data or not args.space:
            raise SqueezeNetError("a new study needs --data and --space (or --resume STUDY_DIR)")
        done = start_sweep(args.space, args.data, args.output, data_root=args.data_root, mode=args.mode,
                           trials=args.trials, trial_budget_s=args.trial_budget, max_params=args.max_params,
                           prune=args.prune, storage=args.storage, seed=args.seed, progress_bar=bool(progress))
    folder = args.resume or args.output
    if is_first_process():  # (under torchrun the other ranks only helped train)
        print(f"{done} trial(s) finished by this worker; `squeezenet sweep --report {folder}` shows the study",
              file=sys.stderr)
    return 0
