"""The ``squeezenet`` command: thin glue over the Python API.

Each subcommand is one function ``cmd_<name>(args) -> int``; heavy imports happen inside them so
that ``squeezenet --help`` answers at once. User errors (``ValueError``, ``OSError``) are printed as
one line on stderr with a non-zero exit; set ``SQUEEZENET_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

PROG = "squeezenet"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("squeezenet")
    except PackageNotFoundError:
        return "unknown"


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, true/false), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.replace("-", "_"), value


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", dest="options", metavar="KEY=VALUE", type=parse_option, action="append", default=[],
        help="a builder option, repeatable: e.g. --set batch_norm=true --set sr=0.25 "
             "(see `squeezenet models --options`)",
    )


# --- subcommands ----------------------------------------------------------------------------------

def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from .models import create_model, get_model_entry, list_models
    from .report.render import console_for_output

    rows = []
    for name in list_models(args.pattern):
        entry = get_model_entry(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in create_model(name).parameters())
        rows.append({"name": name, "params": params, "input_size": entry.input_size,
                     "description": entry.description, "options": entry.options()})
    if not rows:
        raise ValueError(f"no model matches {args.pattern!r}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (("model", "left"), ("params", "right"), ("input", "right"), ("description", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", str(r["input_size"]), r["description"])
        if args.options:
            opts = ", ".join(f"{k}={v!r}" for k, v in r["options"].items())
            table.add_row("", "", "", f"[dim]options: {opts}[/dim]")
    console_for_output().print(table)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .report import architecture_report, print_architecture

    report = architecture_report(args.model, args.input_size, **dict(args.options))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_architecture(report)
    return 0


# --- parser ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SqueezeNet toolkit: define, load, train, compress and deploy SqueezeNet "
                    "(Iandola et al. 2016) in PyTorch.",
        epilog="Run `squeezenet COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description)
        p.set_defaults(func=func)
        return p

    p = add("models", cmd_models, "list the registered models with their sizes",
            "List the registered models: parameter count, native input size and a one-line description.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'squeezenet1_*'")
    p.add_argument("--options", action="store_true", help="also list each builder's options and defaults")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("info", cmd_info, "per-layer architecture report (the paper's Table 1)",
            "Print a per-layer table of a model: output shape, Fire dimensions (s1x1, e1x1, e3x3), "
            "parameters and multiply-accumulates, then totals and the fp32 size. Nothing is allocated: "
            "shapes and MACs are measured on PyTorch's meta device.")
    p.add_argument("model", help="a registered model name (see `squeezenet models`)")
    p.add_argument("--input-size", type=int, default=None, metavar="H",
                   help="square input side in pixels (default: the model's native size, 224 or 32)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: model, input_size, params, macs, size_bytes, layers")
    _add_model_options(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        if os.environ.get("SQUEEZENET_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
