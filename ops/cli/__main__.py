"""``python -m ops.cli …`` runs the ``hub`` command (child processes and tests start it this way)."""

from ops.cli.app import main

main()
