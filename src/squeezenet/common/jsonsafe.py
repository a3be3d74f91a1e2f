"""JSON from files we did not write: bounded in size and depth, strict about numbers, one error type.

Every JSON the toolkit reads from a file (a ``.sqz`` header, ``.safetensors``/``.pth``/ONNX metadata, a run's
own records) goes through :func:`parse_json`. Python's parser recurses once per nesting level, so a few KB of
``[[[[...`` raise ``RecursionError`` (or, in code walking the result, exhaust the stack); it also accepts
``NaN`` and ``Infinity``, which no JSON writer of ours produces and which poison arithmetic downstream.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import SqueezeNetError

MAX_DEPTH = 32  # our deepest document (a .sqz header: meta -> config -> fires -> [i] -> field) is 5 levels
MAX_CHARS = 16 << 20
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def nesting_depth(text: str | bytes) -> int:
    """How deeply arrays and objects nest in ``text`` (brackets inside strings do not count)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', data)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, where: str, *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS) -> Any:
    """``json.loads`` for untrusted text; a :class:`SqueezeNetError` naming ``where`` for anything it refuses."""
    if len(text) > max_chars:
        raise SqueezeNetError(f"{where}: {len(text):,} characters of JSON (at most {max_chars:,})")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise SqueezeNetError(f"{where}: JSON nested {depth:,} levels deep (at most {max_depth})")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        message = " ".join(str(exc).split())[:120]
        raise SqueezeNetError(f"{where}: unreadable JSON ({message})") from None
