"""The command line: ``main`` dispatches the subcommands, ``args`` declares their flags."""

from policysearch.cli.main import main

__all__ = ["main"]
