"""The ``hub`` command line (``hub = "ops.cli:main"``): the assembled app of ops/cli/app.py.

Every command documents itself (``hub --help``, ``hub COMMAND --help``); names and flags are a
public interface operators script against, so they are extended, never renamed.
"""

from ops.cli.app import app as app
from ops.cli.app import main as main

__all__ = ["app", "main"]
