"""The CLI's two consoles: results on stdout, progress and errors on stderr.

Why soft wrap: operators grep and scripts parse the CLI's lines; rich would otherwise break a long
path across lines at the terminal width (80 columns when not a terminal).
"""

from __future__ import annotations

from rich.console import Console

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
