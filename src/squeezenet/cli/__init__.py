"""The ``squeezenet`` command: thin glue over the Python API (see :mod:`squeezenet.cli.main`)."""

from .main import main

__all__ = ["main"]
