"""Roles and permissions of the GraphQL API (角色与权限), from bearer tokens in configuration.

Why permissions rather than role checks in resolvers: every refusal names the permission that was
missing (``cases:write``), so an operator reading the error knows what to ask for, and the mapping
role → permissions is one table here that docs/api.md reproduces.

Why the file is read here and not through ``hub.adapters.config.loading``: the API depends only on
the application,
the messages, the views and the domain (design §3); the token file is a small TOML of its own.
"""

from __future__ import annotations

import hmac
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKENS_FILE = "api_tokens.toml"
DEFAULT_TOKENS = Path(__file__).resolve().parents[2] / "defaults" / TOKENS_FILE

AGGREGATES = "aggregates:read"
"""Overview, indicators, hotspots, grids: counts only, no case rows."""
CASES = "cases:read"
"""Case rows and timelines (personal data masked unless PERSONAL is also held)."""
ALL_CASES = "cases:read_all"
"""Cases of every department (a department role holds only its own)."""
PERSONAL = "cases:read_personal"
"""Reporter name, phone and id number, and free-text notes of the timeline (个人信息)."""
WRITE = "cases:write"
"""Operator actions (mutations)."""
HISTORY = "history:read"
"""Time travel (``asOf``) on case rows and timelines; aggregates at a past moment need only AGGREGATES."""

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "screen": frozenset({AGGREGATES, CASES, ALL_CASES}),
    "operator": frozenset({AGGREGATES, CASES, ALL_CASES, PERSONAL, WRITE}),
    "auditor": frozenset({AGGREGATES, CASES, ALL_CASES, PERSONAL, HISTORY}),
    "analyst": frozenset({AGGREGATES, CASES, ALL_CASES, HISTORY}),
    "department": frozenset({AGGREGATES, CASES, PERSONAL, HISTORY}),
}
"""Role → permissions; ``department:<code>`` is the ``department`` row restricted to its own cases."""


class AuthError(Exception):
    """No or unknown bearer token (HTTP 401 / a refused WebSocket)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the role, the permissions it carries, and the actor recorded on its actions."""

    role: str
    actor: str
    permissions: frozenset[str]
    department: str | None = None  # set for department:<code> roles: only its own cases

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def can_see_case(self, origin: str, responsible: Iterable[str]) -> bool:
        """A department sees a case it reported (origin) or is responsible for; others see all."""
        if self.department is None:
            return ALL_CASES in self.permissions
        return origin == self.department or self.department in responsible


def principal_for(role: str, actor: str | None = None) -> Principal:
    base, _, dept = role.partition(":")
    permissions = ROLE_PERMISSIONS.get(base)
    if permissions is None or (base == "department") != bool(dept):
        known = ", ".join(sorted(r for r in ROLE_PERMISSIONS if r != "department"))
        raise ValueError(f"unknown role {role!r}: use {known} or department:<code>")
    return Principal(role, actor or role, permissions, dept or None)


class TokenBook:
    """Bearer token → principal; comparisons in constant time."""

    def __init__(self, entries: Mapping[str, Principal]) -> None:
        self._entries = dict(entries)

    @classmethod
    def load(cls, config_dir: Path | None = None) -> TokenBook:
        """``HUB_CONFIG_DIR/api_tokens.toml`` when present, else the shipped development tokens."""
        path = config_dir / TOKENS_FILE if config_dir is not None else None
        if path is None or not path.exists():
            path = DEFAULT_TOKENS
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
        entries: dict[str, Principal] = {}
        for i, item in enumerate(data.get("token", [])):
            try:
                entries[str(item["token"])] = principal_for(str(item["role"]), item.get("actor"))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}: [[token]] #{i + 1}: {exc}") from exc
        return cls(entries)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        found: Principal | None = None
        for known, principal in self._entries.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                found = principal
        if found is None:
            raise AuthError("unknown bearer token")
        return found
