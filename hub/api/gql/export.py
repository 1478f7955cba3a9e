"""Write the SDL to ``graphql/schema.graphql`` (the contract; tests/architecture checks drift).

Run: ``.venv/bin/python -m hub.api.gql.export [path]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hub.api.gql.schema import schema

DEFAULT_PATH = Path(__file__).resolve().parents[3] / "graphql" / "schema.graphql"


def sdl() -> str:
    return schema.as_str() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else DEFAULT_PATH
    target.write_text(sdl(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
