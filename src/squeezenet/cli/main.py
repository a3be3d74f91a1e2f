"""``squeezenet``: the entry point, the error policy and the logging the command line installs.

Each verb group lives in its own module (``@verb`` declares a handler as a subcommand, its docstring is the
help, its arguments are declared beside it); heavy imports happen inside handlers so that
``squeezenet --help`` answers at once. Errors:
a :class:`~squeezenet.errors.SqueezeNetError` (bad input) or ``OSError`` (a file) is one line on stderr and
exit status 1, with the library's parameter names (``resume=True``) spelled as this command's flags
(``--resume``); anything else is a bug and keeps its traceback. ``SQUEEZENET_DEBUG=1`` shows tracebacks for
user errors too. A verb whose optional extra is missing says which one to install, even for ``--help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence

from ..common.dist import is_first_process
from ..common.extras import missing, require_extra
from ..errors import Interrupted, MissingExtraError, SqueezeNetError
from . import catalog, compression, deployment, inference, sweeping, training  # noqa: F401  (each declares its verbs)
from .args import VERBS

PROG = "squeezenet"
GROUPS = ("catalog", "inference", "training", "sweeping", "compression", "deployment")  # their order in --help


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from ..common.extras import DISTRIBUTION

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The parser, and the extra each verb needs (verbs without one are absent)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SqueezeNet toolkit: define, load, train, compress and deploy SqueezeNet "
                    "(Iandola et al. 2016) in PyTorch.",
        epilog="Run `squeezenet COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for v in sorted(VERBS, key=lambda v: GROUPS.index(v.handler.__module__.rsplit(".", 1)[-1])):
        note = f" [needs the {v.extra} extra]" if v.extra and missing(v.extra) else ""
        p = sub.add_parser(v.name, help=v.help.rstrip(".") + note, description=v.description)
        v.arguments(p)
        p.set_defaults(func=v.handler, parser=p)
    return parser, {v.name: v.extra for v in VERBS if v.extra}


def flag_spelling(message: str, parser: argparse.ArgumentParser) -> str:
    """Library messages name Python parameters (``resume=True``, ``limit=3``, ``work_dir=``); on the command line
    they are this verb's flags (``--resume``, ``--limit 3``, ``--work-dir``)."""
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs:
            continue
        flag, dest = longs[0], re.escape(action.dest)
        # (?<!--set ): `--set epochs=abc` is already what the user typed
        message = re.sub(rf"(?<![\w.-])(?<!--set ){dest}=True\b", flag, message)
        message = re.sub(rf"(?<![\w.-])(?<!--set ){dest}=(?=[^\s),;:])", flag + " ", message)
        message = re.sub(rf"(?<![\w.-])(?<!--set ){dest}=", flag, message)
    return message


class ConsoleLogHandler(logging.Handler):
    """Log records as plain lines through rich's console: warnings as ``squeezenet: warning: ...`` (yellow
    on a terminal), the rest as they are. ``rich.logging.RichHandler`` lays records out in a table that
    wraps and pads every line to the console width, which breaks log files and ``grep``."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console

        self.console = Console(stderr=True, soft_wrap=True, highlight=False)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                self.console.print(f"{PROG}: warning: {text}", style="yellow", markup=False)
            else:
                self.console.print(text, markup=False)
        except Exception:  # logging must never take the command down
            self.handleError(record)


def setup_logging(quiet: bool) -> None:
    """The library logs to ``squeezenet.*``; the command line shows INFO (WARNING with ``--json``, or on
    every torchrun rank but the first, so reports are printed once)."""
    logger = logging.getLogger("squeezenet")
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleLogHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(ConsoleLogHandler())
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    if not is_first_process():
        logger.setLevel(logging.ERROR)
    logger.propagate = False


MAX_MESSAGE_CHARS = 300


def one_line(exc: BaseException, parser: argparse.ArgumentParser) -> str:
    """An error as the one line the command prints: whitespace folded, flags spelled as this verb's, and cut to
    about 300 characters (messages name the file and the problem first; what follows echoes values)."""
    text = " ".join(str(exc).split()[:200]) or type(exc).__name__
    message = flag_spelling(text[:4 * MAX_MESSAGE_CHARS], parser)
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS - 3].rstrip() + "..."


def _verb(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, extras = build_parser()
    verb = _verb(argv)
    if verb in extras:  # before parsing, so that `squeezenet train --help` says it too
        try:
            require_extra(extras[verb], f"`{PROG} {verb}`")
        except MissingExtraError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(quiet=getattr(args, "json", False))
    try:
        return args.func(args)
    except (SqueezeNetError, OSError) as exc:
        if os.environ.get("SQUEEZENET_DEBUG"):
            raise
        message = one_line(exc, args.parser)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        if getattr(args, "json", False):  # a program reading --json output gets a JSON document either way
            print(json.dumps({"error": message}))
        return 1
    except Interrupted as exc:
        print(f"{PROG}: stopped: {one_line(exc, args.parser)}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
