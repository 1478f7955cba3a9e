"""Open311 ``api_key`` holders from ``HUB_CONFIG_DIR/open311_keys.toml`` (市民诉求 app keys).

Why a file of its own and not rows of ``api_tokens.toml``: an Open311 key is no role of the
GraphQL API. It is what a citizen app (the 12345 hotline app, a district's WeChat mini-program)
sends as ``api_key`` with each new request, so the hub knows whose app it is and how fast that app
may create cases. Format (docs/security.md)::

    [[key]]
    api_key = "kq3…"               # at least 24 characters: secrets.token_urlsafe(32)
    name = "12345 市民热线 app"     # who holds it (named in refusals and rate limits)
    department = "citizens"        # whose app it is (default citizens)
    per_minute = 60                # long-run rate of POST /requests (default 60)
    burst = 10                     # requests at once before the rate applies (default 10)

No file (or a file without keys): ``POST /requests`` needs no ``api_key``. That is for
development only: ``hub up`` warns, and production mode refuses to start.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hub.api.open311 import ApiKey
from ops.settings import SettingsError

KEYS_FILE = "open311_keys.toml"
MIN_KEY_LENGTH = 24


def keys_path(config_dir: Path | None) -> Path | None:
    """The deployment's key file, or ``None`` when it has none (nothing is shipped)."""
    if config_dir is None or not (config_dir / KEYS_FILE).exists():
        return None
    return config_dir / KEYS_FILE


def load_open311_keys(config_dir: Path | None) -> dict[str, ApiKey]:
    """``api_key`` → its holder; empty when no keys are configured. A malformed file is an error
    naming the file, the entry and the field (the hub does not start on a half-read key list)."""
    path = keys_path(config_dir)
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: cannot be read: {exc}") from None
    entries = data.get("key", [])
    if not isinstance(entries, list):
        raise SettingsError(f"{path}: expected [[key]] tables (api_key, name, department, per_minute, burst)")
    keys: dict[str, ApiKey] = {}
    for i, entry in enumerate(entries, 1):
        where = f"{path}: [[key]] #{i}"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where}: expected a table")
        unknown = set(entry) - {"api_key", "name", "department", "per_minute", "burst"}
        if unknown:
            raise SettingsError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        key, name = entry.get("api_key"), entry.get("name")
        if not isinstance(key, str) or len(key.strip()) < MIN_KEY_LENGTH or key != key.strip():
            raise SettingsError(f"{where}: api_key must be text of at least {MIN_KEY_LENGTH} characters")
        if key in keys:
            raise SettingsError(f"{where}: this api_key is already given to {keys[key].name}")
        if not isinstance(name, str) or not name.strip():
            raise SettingsError(f"{where}: name required (who holds the key)")
        department = entry.get("department", "citizens")
        per_minute = entry.get("per_minute", 60)
        burst = entry.get("burst", 10)
        if not isinstance(department, str) or not department:
            raise SettingsError(f"{where}: department must be a department code, e.g. citizens")
        if isinstance(per_minute, bool) or not isinstance(per_minute, int | float) or per_minute <= 0:
            raise SettingsError(f"{where}: per_minute must be a number above 0")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise SettingsError(f"{where}: burst must be a whole number of at least 1")
        keys[key] = ApiKey(
            name=name.strip(), department=department, per_minute=float(per_minute), burst=burst
        )
    return keys
