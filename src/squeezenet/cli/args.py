"""Arguments several verbs share, declared once, and the argument types of the command line."""

from __future__ import annotations

import argparse
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Verb:
    """One subcommand: its handler, the function that declares its arguments, and the extra it needs.
    The handler's docstring is its help: the first line for ``squeezenet --help``, the rest for its own."""

    name: str
    handler: Handler
    arguments: Arguments
    extra: str | None = None

    @property
    def help(self) -> str:
        return (inspect.getdoc(self.handler) or "").split("\n\n", 1)[0].strip()

    @property
    def description(self) -> str:
        parts = (inspect.getdoc(self.handler) or "").split("\n\n", 1)
        return " ".join(parts[-1].split())


#: every verb, in the order the verb modules declare them (the order of ``squeezenet --help``)
VERBS: list[Verb] = []


def verb(name: str, arguments: Arguments, extra: str | None = None) -> Callable[[Handler], Handler]:
    """Declare a handler as the subcommand ``name``."""

    def declare(handler: Handler) -> Handler:
        VERBS.append(Verb(name, handler, arguments, extra))
        return handler

    return declare

WEIGHTS_HELP = ("weights: a file (.sqz, .net, .pth, .pt, .safetensors) or a named set "
                "(see `squeezenet weights`, e.g. squeezenet1_1.tv_in1k)")


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, true/false), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = raw
    if isinstance(value, float) and not math.isfinite(value):  # 1e400, NaN: left as text, refused by the field
        value = raw
    return key.replace("-", "_"), value


# kept in step with squeezenet.deploy.runtime.RUNTIMES (a test checks); listed here so --help imports nothing
RUNTIME_CHOICES = ("auto", "pytorch", "onnxruntime", "openvino", "openvino-fp32", "executorch", "litert")


def add_weights(p: argparse.ArgumentParser, onnx: bool = False) -> None:
    p.add_argument("-w", "--weights", required=True,
                   help=WEIGHTS_HELP + ("; or an .onnx/.pte/.tflite file from `squeezenet export`" if onnx else ""))


def add_labelled_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--data", required=True, help="labelled image folder (as for `squeezenet eval`)")


def add_json(p: argparse.ArgumentParser, what: str = "print JSON instead of a table") -> None:
    p.add_argument("--json", action="store_true", help=what + '; a failure prints {"error": "..."} as well')


def add_set(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--set", dest="options", metavar="KEY=VALUE", type=parse_option, action="append", default=[],
                   help=help)


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="where named datasets live (default $SQUEEZENET_DATA)")


def add_device(p: argparse.ArgumentParser, onnx: bool = True) -> None:
    p.add_argument("--device", default=None,
                   help="where PyTorch weights run: cpu (default), cuda, cuda:N, mps or auto" +
                        ("; for .onnx files cuda picks onnxruntime's CUDA provider" if onnx else ""))
    if onnx:
        p.add_argument("--provider", action="append", default=None, metavar="NAME",
                       help="onnxruntime execution provider for .onnx files, repeatable in order of preference "
                            "(default CPUExecutionProvider)")
        p.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES,
                       help="what runs the file: pytorch (weights files), onnxruntime, openvino (bf16 where the CPU "
                            "has it), openvino-fp32 (.onnx), executorch (.pte), litert (.tflite); auto (default): the "
                            "fastest installed runtime for the file that keeps its precision, measured on this machine once")
