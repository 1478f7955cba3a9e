"""Production mode (生产模式): ``hub up`` refuses to start with any development credential or open door.

Why a refusal and not a warning: the hub ships development credentials so that ``hub up`` works
on a laptop with nothing configured (``dev-operator``, ``dev-police-token``, Open311 without
keys …). A deployment that forgets to replace one of them runs with a door anyone who has read
the README can open, and a warning in a log nobody reads at 3 a.m. does not close it. The most
trusted systems of this kind refuse instead (KurrentDB needs an explicit ``--insecure``).

How: one function per door, each returning problem strings (empty: that door is closed); a
problem names the door, what is wrong, and what to do. :func:`production_problems` runs them all
and ``hub up`` in production mode (``HUB_ENV=production`` or ``hub up --production``) prints every
problem and exits with :data:`EXIT_REFUSED`. In development mode the same list is what the banner
shows as "development credentials active", so both modes say the same thing about the same doors.

Adding a door: write ``def my_door(settings) -> list[str]`` and list it in :data:`CHECKS`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hub.adapters.config.loading import DEFAULTS_DIR, config_file, load_departments
from hub.messages import COMMAND_DEPARTMENT
from ops.nats_auth import nats_development_defaults
from ops.open311_keys import KEYS_FILE, load_open311_keys
from ops.settings import Settings, nats_client_credentials

EXIT_REFUSED = 78
"""``hub up``'s exit status when production mode refuses to start (EX_CONFIG of sysexits.h:
a configuration error; the systemd unit does not restart on it)."""
MIN_SECRET_LENGTH = 24
"""Shorter tokens are refused in production: long random tokens only (``secrets.token_urlsafe(32)``)."""


class ProductionRefused(RuntimeError):
    """Production mode found development credentials or open doors; ``problems`` names each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"production mode (HUB_ENV=production / --production) refuses to start; "
            f"{len(problems)} problem(s):\n{lines}\nSee docs/security.md."
        )


def _toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _weak(token: str) -> bool:
    return len(token) < MIN_SECRET_LENGTH or token.startswith("dev-")


def _token_problems(door: str, dev: list[str], where: str, holders: list[str], fix: str) -> list[str]:
    """The two things wrong with a door's tokens: shipped development tokens still active (named:
    they are public), and the deployment's own weak ones (only their holders: no secret in a log)."""
    out: list[str] = []
    if dev:
        out.append(f"{door}: development tokens {', '.join(dev)} are active{where}; {fix}")
    if holders:
        out.append(
            f"{door}: the token(s) of {', '.join(holders)} are shorter than {MIN_SECRET_LENGTH} "
            "characters or start with 'dev-'; use long random tokens"
        )
    return out


def development_api_tokens(settings: Settings) -> list[str]:
    """GraphQL/screen bearer tokens (``api_tokens.toml``): none of the shipped development tokens,
    none short or ``dev-…``."""
    shipped = {str(t["token"]) for t in _toml(DEFAULTS_DIR / "api_tokens.toml").get("token", [])}
    path = config_file("api_tokens.toml", settings.config_dir)
    entries = [(str(t.get("token")), str(t.get("role", "?"))) for t in _toml(path).get("token", [])]
    own = path != DEFAULTS_DIR / "api_tokens.toml"
    return _token_problems(
        "API tokens (GraphQL and screen)",
        sorted(token for token, _ in entries if token in shipped),
        f", from {path}"
        if own
        else ", from the shipped hub/defaults/api_tokens.toml (no HUB_CONFIG_DIR/api_tokens.toml)",
        sorted(f"role {role}" for token, role in entries if token not in shipped and _weak(token)),
        "give each screen and person a long random token in HUB_CONFIG_DIR/api_tokens.toml",
    )


def development_ingest_tokens(settings: Settings) -> list[str]:
    """HTTP ingest department tokens (``ingest_tokens.toml`` and ``HUB_INGEST_TOKENS``)."""
    from ops.bootstrap import OPS_DEFAULTS, load_tokens

    shipped: set[str] = set()
    for values in _toml(OPS_DEFAULTS / "ingest_tokens.toml").get("tokens", {}).values():
        shipped.update([values] if isinstance(values, str) else values)
    active = load_tokens(settings.config_dir)  # token → department, env tokens included
    own = settings.config_dir is not None and (settings.config_dir / "ingest_tokens.toml").exists()
    return _token_problems(
        "ingest tokens (POST /ingest/…)",
        sorted(f"{token} ({department})" for token, department in active.items() if token in shipped),
        "" if own else " (no HUB_CONFIG_DIR/ingest_tokens.toml)",
        sorted({dept for token, dept in active.items() if token not in shipped and _weak(token)}),
        "give each department a long random token in HUB_CONFIG_DIR/ingest_tokens.toml",
    )


def open311_without_keys(settings: Settings) -> list[str]:
    """Open311 ``POST /requests`` must need an ``api_key`` (``open311_keys.toml``)."""
    if load_open311_keys(settings.config_dir):
        return []
    return [
        f"Open311 (POST /open311/v2/requests): no api_key is required, so anyone can create cases "
        f"(no [[key]] in HUB_CONFIG_DIR/{KEYS_FILE}); issue a key to each citizen app"
    ]


def departments_without_sources(settings: Settings) -> list[str]:
    """Every department lists its source systems (``departments.toml`` ``sources``), so none can
    open cases under another's (hub.domain.authority, rule 6)."""
    departments = load_departments(settings.config_dir)
    bare = sorted(code for code, d in departments.items() if not d.sources and code != COMMAND_DEPARTMENT)
    if not bare:
        return []
    return [
        f"departments without 'sources' in departments.toml: {', '.join(bare)} (any of them may open "
        f"cases under a source system no department lists); list each department's source systems"
    ]


def metrics_without_token(settings: Settings) -> list[str]:
    """``/metrics`` must need a bearer token (``HUB_METRICS_TOKEN``)."""
    token = settings.metrics_token
    if token is None:
        return [
            "/metrics answers without a token; set HUB_METRICS_TOKEN (Prometheus sends it as a bearer token)"
        ]
    if _weak(token):
        return [
            f"/metrics: HUB_METRICS_TOKEN is shorter than {MIN_SECRET_LENGTH} characters "
            "or starts with 'dev-'; use a long random token"
        ]
    return []


def nats_development_passwords(settings: Settings) -> list[str]:
    """NATS users still on their development passwords (the embedded server's department users from
    ``HUB_CONFIG_DIR/nats_users.toml``), or an external ``HUB_NATS_URL`` with a development password
    or none at all (``ops.nats_auth.nats_development_defaults``)."""
    return nats_development_defaults(
        settings.config_dir, settings.nats_url, other_credentials=bool(nats_client_credentials())
    )


CHECKS: list[Callable[[Settings], list[str]]] = [
    development_api_tokens,
    development_ingest_tokens,
    open311_without_keys,
    metrics_without_token,
    nats_development_passwords,
    departments_without_sources,
]
"""Every door production mode checks, in the order the refusal names them. (No development store
key exists to check: the hub ships none, ``HUB_STORE_KEY`` comes from ``hub privacy new-store-key``.)"""


def production_problems(
    settings: Settings, checks: Iterable[Callable[[Settings], list[str]]] | None = None
) -> list[str]:
    """Every development credential or open door, one line each (empty: fit for production)."""
    problems: list[str] = []
    for check in CHECKS if checks is None else checks:
        problems.extend(check(settings))
    return problems


def refuse_if_unfit(settings: Settings) -> list[str]:
    """In production mode: raise :class:`ProductionRefused` naming every problem. In development
    mode: return the same problems, which the banner shows as the development credentials active."""
    problems = production_problems(settings)
    if settings.production and problems:
        raise ProductionRefused(problems)
    return problems
