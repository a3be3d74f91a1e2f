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
