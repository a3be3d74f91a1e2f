"""What the user got wrong, apart from what we got wrong.

Library code raises :class:`SqueezeNetError` for bad input (a file, an option, an image folder) with a
message that names the thing and the problem; the command line prints exactly these (and ``OSError``) as one
line. Any other exception is a bug and keeps its traceback. ``SqueezeNetError`` is a ``ValueError`` so that
code written against the earlier ``ValueError`` contract keeps working.
"""

from __future__ import annotations


class SqueezeNetError(ValueError):
    """Bad input from the user: a file, a value, an option. The message is one sentence that names it."""


class MissingExtraError(SqueezeNetError, ImportError):
    """A feature whose optional dependencies are not installed; the message names the extra to install."""


class Interrupted(Exception):
    """Work stopped by a signal (SIGTERM, SIGINT) after saving what lets it continue; the command line prints
    the message and exits with 128 + ``signum``, as a shell reports a process killed by that signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters: messages echo bad values, and a
    bad value can be a megabyte (a list of a million entries in a file's header) or an integer too long to print."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, (list, tuple, dict)) and len(value) > limit:
        return f"a {type(value).__name__} of {len(value):,} entries"
    try:
        text = repr(value)
    except ValueError:  # int -> str beyond sys.get_int_max_str_digits()
        return "a number with thousands of digits"
    return text if len(text) <= limit else text[:limit] + "..."


def count(value: int) -> str:
    """An integer from a file for a message, with thousands separators (``15,124``); a forged one can have
    hundreds of digits, which would push the message's point out of its one line."""
    if abs(value) < 10**15:
        return f"{value:,}"
    return f"a number of about {int(abs(value).bit_length() * 0.30103) + 1:,} digits"  # str() refuses > 4,300 digits


def names_mismatch(missing: list[str], unexpected: list[str]) -> str:
    """``2 missing ('a.weight', ...); 1 unexpected ('x')``: what a file's tensor names lack and add, in a few words
    (a forged file can name thousands)."""
    def part(names: list[str], what: str) -> str:
        shown = ", ".join(brief(n, 40) for n in names[:2]) + (", ..." if len(names) > 2 else "")
        return f"{len(names):,} {what} ({shown})"

    return "; ".join(part(names, what) for names, what in ((missing, "missing"), (unexpected, "unexpected")) if names)
