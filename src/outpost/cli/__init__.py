"""The ``outpost`` command line: one module per command group, each only translating to core calls."""

from outpost.cli.main import app, main

__all__ = ["app", "main"]
