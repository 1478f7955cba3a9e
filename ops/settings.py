"""Runtime settings from the environment and the command line (HUB_* variables).

Why here: reading the environment and choosing adapters is the composition root's job (ops);
the core receives plain values.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from hub.messages import DEFAULT_TIME_WINDOW, TimeWindow

DEFAULT_NATS_PORT = 4222
DEFAULT_HTTP_PORT = 8000
ENVIRONMENTS = ("development", "production")


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable or flag and the expected form."""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    nats_url: str | None  # external NATS; None = the embedded server
    store_url: str
    config_dir: Path | None
    stall_s: float = 30.0
    """``HUB_STALL_S``: seconds without intake progress, while events wait in the stream, after
    which ``/readyz`` reports the intake stalled."""
    nats_max_file_store: str | None = None
    """``HUB_NATS_MAX_FILE_STORE`` (e.g. ``10GB``): the embedded JetStream's disk limit."""
    env: str = "development"
    """``HUB_ENV``: ``development`` (the shipped development credentials work, and the banner
    says which are active) or ``production`` (``hub up`` refuses to start while any is configured;
    ``ops/production.py``). ``hub up --production`` is the same as ``HUB_ENV=production``."""
    metrics_token: str | None = None
    """``HUB_METRICS_TOKEN``: ``/metrics`` then needs ``Authorization: Bearer <token>``."""
    open311_max_bytes: int = 1024 * 1024
    """``HUB_OPEN311_MAX_BYTES``: the largest ``POST /open311/v2/requests`` body (default 1 MB)."""

    @property
    def production(self) -> bool:
        return self.env == "production"

    stream_retention: StreamRetention | None = None
    """``HUB_STREAM_MAX_AGE`` / ``HUB_STREAM_MAX_BYTES`` (see :func:`stream_retention`)."""

    @classmethod
    def from_env(cls, data_dir: Path | None = None, store_url: str | None = None) -> Settings:
        data = (data_dir or Path(os.environ.get("HUB_DATA_DIR", "var"))).resolve()
        store = store_url or os.environ.get("HUB_STORE_URL") or f"sqlite:///{data / 'events.sqlite'}"
        stall = os.environ.get("HUB_STALL_S", "30")
        try:
            stall_s = float(stall)
        except ValueError:
            raise SettingsError(f"HUB_STALL_S {stall!r}: expected seconds, e.g. 30") from None
        if stall_s <= 0:
            raise SettingsError(f"HUB_STALL_S {stall!r}: must be more than 0 seconds")
        max_store = os.environ.get("HUB_NATS_MAX_FILE_STORE", "").strip() or None
        if max_store is not None and not max_store.rstrip("KMGTBkmgtb").isdigit():
            raise SettingsError(
                f"HUB_NATS_MAX_FILE_STORE {max_store!r}: expected a size such as 10GB, 512MB or 1073741824"
            )
        env = (os.environ.get("HUB_ENV") or "development").strip().lower()
        if env not in ENVIRONMENTS:
            raise SettingsError(f"HUB_ENV {env!r}: expected {' or '.join(ENVIRONMENTS)}")
        open311_bytes = os.environ.get("HUB_OPEN311_MAX_BYTES", "").strip() or str(1024 * 1024)
        if not open311_bytes.isdigit() or int(open311_bytes) < 1024:
            raise SettingsError(
                f"HUB_OPEN311_MAX_BYTES {open311_bytes!r}: expected a number of bytes, at least 1024"
            )
        return cls(
            data_dir=data,
            nats_url=os.environ.get("HUB_NATS_URL") or None,
            store_url=store,
            config_dir=config_dir(),
            stall_s=stall_s,
            nats_max_file_store=max_store,
            env=env,
            metrics_token=os.environ.get("HUB_METRICS_TOKEN", "").strip() or None,
            open311_max_bytes=int(open311_bytes),
            stream_retention=stream_retention(),  # a malformed value stops the start, named
        )

    @property
    def nats_url_file(self) -> Path:
        """Where a running hub writes its embedded server's URL, so CLI commands find it."""
        return self.data_dir / "nats.url"

    @property
    def nats_port_file(self) -> Path:
        """The embedded server's port, chosen on the first start and reused on every later one."""
        return self.data_dir / "nats.port"

    def resolve_nats_url(self, explicit: str | None = None) -> str:
        """``--nats-url``, else ``HUB_NATS_URL``, else the running hub's embedded server.

        A URL without credentials that names the embedded server of this data dir gets the hub
        user's (``DATA_DIR/nats-hub-credentials.json``, :func:`ops.nats_auth.with_hub_credentials`):
        the CLI on the hub's machine acts as the hub; ``nats.url`` itself never holds the secret."""
        from ops.nats_auth import with_hub_credentials

        if not explicit and self.nats_url:
            return self.nats_url
        url = explicit
        if not url and self.nats_url_file.exists():
            url = self.nats_url_file.read_text().strip()
        url = url or f"nats://127.0.0.1:{DEFAULT_NATS_PORT}"
        return with_hub_credentials(url, self.data_dir, self.embedded_ports())

    def embedded_ports(self) -> set[int]:
        """The ports of this data dir's embedded server (kept, and the running one's)."""
        ports: set[int] = set()
        for path in (self.nats_port_file, self.nats_url_file):
            if path.exists():
                port = path.read_text().strip().rpartition(":")[2]
                if port.isdigit():
                    ports.add(int(port))
        return ports


@dataclass(frozen=True, slots=True)
class StreamRetention:
    """How long, and how much, ``CITY`` and ``CITY_DLQ`` keep (``None``: not configured)."""

    max_age_s: float | None = None
    """Seconds; 0 = unbounded."""
    max_bytes: int | None = None
    """Bytes per stream; -1 = unbounded."""


_UNBOUNDED = {"0", "-1", "unlimited", "none", "off"}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def stream_retention(max_age: str | None = None, max_bytes: str | None = None) -> StreamRetention:
    """``HUB_STREAM_MAX_AGE`` (``30d``, ``12h``, ``90m``, ``3600s``, ``2w``; ``unlimited``) and
    ``HUB_STREAM_MAX_BYTES`` (``10GB``, ``512MB``, bytes; ``unlimited``), applied to ``CITY`` and
    ``CITY_DLQ`` at every start (``hub.intake.ensure_streams`` says what happens when unset)."""
    age_text = (max_age if max_age is not None else os.environ.get("HUB_STREAM_MAX_AGE", "")).strip()
    size_text = (max_bytes if max_bytes is not None else os.environ.get("HUB_STREAM_MAX_BYTES", "")).strip()
    age: float | None = None
    if age_text:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", age_text.lower())
        if age_text.lower() in _UNBOUNDED:
            age = 0.0
        elif match:
            age = float(match[1]) * _AGE_UNITS[match[2] or "s"]
            if age < 120:
                raise SettingsError(
                    f"HUB_STREAM_MAX_AGE {age_text!r}: at least 2m (the streams' duplicate window), "
                    f"or 'unlimited'"
                )
        else:
            raise SettingsError(
                f"HUB_STREAM_MAX_AGE {age_text!r}: expected a duration such as 30d, 12h, 90m or "
                f"3600s, or 'unlimited'"
            )
    size: int | None = None
    if size_text:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", size_text.lower())
        if size_text.lower() in _UNBOUNDED:
            size = -1
        elif match:
            size = int(float(match[1]) * _SIZE_UNITS[match[2]])
            if size < 1024**2:
                raise SettingsError(f"HUB_STREAM_MAX_BYTES {size_text!r}: at least 1MB, or 'unlimited'")
        else:
            raise SettingsError(
                f"HUB_STREAM_MAX_BYTES {size_text!r}: expected a size such as 10GB, 512MB or "
                f"1073741824 (1024-based units), or 'unlimited'"
            )
    return StreamRetention(age, size)


def time_window(text: str | None = None) -> TimeWindow:
    """The plausible-time window of event timestamps (``HUB_TIME_WINDOW``, default
    ``1970-01-01/+1d``): events outside it are answered or dead-lettered with reason
    ``time_window`` naming the field. Grammar: :data:`hub.messages.TIME_WINDOW_GRAMMAR`. Used by
    ``hub up``, ``hub intake``, HTTP ingest and ``hub import`` alike."""
    raw = text if text is not None else os.environ.get("HUB_TIME_WINDOW", "")
    if not raw.strip():
        return DEFAULT_TIME_WINDOW
    try:
        return TimeWindow.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"HUB_TIME_WINDOW {exc}") from None


MAX_DEMO_SPEED = 3600.0


def demo_speed(explicit: float | None = None) -> float:
    """The demo city's clock: simulated seconds per wall second (``--demo-speed``, else
    ``HUB_DEMO_SPEED``, else 1 = real time). Faster clocks are for demonstrations and tests that
    need many demo minutes in one (e.g. 20: ten demo minutes in thirty seconds)."""
    raw: object = explicit if explicit is not None else os.environ.get("HUB_DEMO_SPEED") or 1.0
    where = "--demo-speed" if explicit is not None else "HUB_DEMO_SPEED"
    try:
        speed = float(raw)  # type: ignore[arg-type]
    except ValueError:
        raise SettingsError(
            f"{where} {raw!r}: expected a number of simulated seconds per second, e.g. 20"
        ) from None
    if not 0 < speed <= MAX_DEMO_SPEED:
        raise SettingsError(f"{where} {raw!r}: expected a speed above 0 and at most {MAX_DEMO_SPEED:g}")
    return speed


def store_env(url: str, store_key: str | None = None) -> dict[str, str]:
    """Translate ``HUB_STORE_URL`` (and ``HUB_STORE_KEY``) into the eventsourcing library's settings.

    ``HUB_STORE_KEY`` (base64 of 16, 24 or 32 random bytes: ``hub privacy new-store-key``) turns on
    the library's whole-store encryption at rest (AES-GCM of every stored state, via ``cryptography``).
    """
    env = _store_env(url)
    key = store_key if store_key is not None else os.environ.get("HUB_STORE_KEY", "")
    if key:
        env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
        env["CIPHER_KEY"] = key
    return env


def _store_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if url.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        elif url.startswith("sqlite:///"):
            path = path[1:] if path.startswith("/") and not Path(path).is_absolute() else path
        if not path:
            raise SettingsError(
                f"HUB_STORE_URL {url!r}: expected sqlite:///PATH (e.g. sqlite:///var/events.sqlite)"
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    if parts.scheme in {"postgresql", "postgres"}:
        if not parts.path.strip("/"):
            raise SettingsError(
                f"HUB_STORE_URL {url!r}: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME"
            )
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parts.path.strip("/")),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_POOL_SIZE": "4",
        }
        for key, values in parse_qs(parts.query).items():  # e.g. ?schema=hub
            env[f"POSTGRES_{key.upper()}"] = values[-1]
        return env
    raise SettingsError(
        f"HUB_STORE_URL {url!r}: unsupported scheme {parts.scheme!r}; use sqlite:///PATH or postgresql://…"
    )


def graphql_limits() -> dict[str, int]:
    """Limits of the GraphQL API from the environment, as ``hub.api.gql.Limits`` arguments:
    ``HUB_GRAPHQL_MAX_BYTES`` (a query document above it is refused unparsed; default 100000) and
    ``HUB_GRAPHQL_REWINDS_PER_MINUTE`` (``asOf`` rewinds per screen/operator token; default 10)."""
    out: dict[str, int] = {}
    for name, key, example in (
        ("HUB_GRAPHQL_MAX_BYTES", "max_bytes", "100000"),
        ("HUB_GRAPHQL_REWINDS_PER_MINUTE", "rewinds_per_minute", "10"),
    ):
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise SettingsError(f"{name} {raw!r}: expected a whole number, e.g. {example}") from None
        if value < 1:
            raise SettingsError(f"{name} {raw!r}: must be at least 1")
        out[key] = value
    return out


def config_dir() -> Path | None:
    """``HUB_CONFIG_DIR``: the deployment's configuration files (each one present replaces the
    shipped default of ``hub/defaults`` / ``ops/defaults``); ``None`` when unset."""
    raw = os.environ.get("HUB_CONFIG_DIR")
    return Path(raw).resolve() if raw else None


def nats_port(explicit: int | None = None) -> int | None:
    """The embedded NATS server's port: ``--nats-port``, else ``HUB_NATS_PORT``, else ``None``
    (the kept or default port, ``ops.runtime``)."""
    if explicit is not None:
        return explicit
    raw = os.environ.get("HUB_NATS_PORT", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"HUB_NATS_PORT {raw!r}: expected a port number, 1 to 65535")
    return int(raw)


def demo_rate(flag: float) -> float:
    """The demo city's cases per hour: ``HUB_DEMO_RATE`` when set (it wins over ``--demo-rate``,
    as it always has: the flag's default cannot be told from an explicit value), else the flag."""
    raw = os.environ.get("HUB_DEMO_RATE", "").strip()
    if not raw:
        return flag
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"HUB_DEMO_RATE {raw!r}: expected cases per hour, e.g. 600") from None


def ingest_tokens() -> dict[str, str]:
    """``HUB_INGEST_TOKENS="police=secret1,health=secret2"``: HTTP ingest tokens from the
    environment, token → department, added to ``ingest_tokens.toml``'s (ops.bootstrap)."""
    tokens: dict[str, str] = {}
    for pair in filter(None, os.environ.get("HUB_INGEST_TOKENS", "").split(",")):
        department, _, token = pair.partition("=")
        if token:
            tokens[token.strip()] = department.strip()
    return tokens


def stream_replicas() -> int | None:
    """``HUB_STREAM_REPLICAS`` (1 to 5): the replicas of ``CITY`` and ``CITY_DLQ``; ``None`` when
    unset (then the server decides: 3 on a cluster, else 1; ``ops.cluster.stream_replicas``)."""
    configured = os.environ.get("HUB_STREAM_REPLICAS", "").strip()
    if not configured:
        return None
    try:
        replicas = int(configured)
    except ValueError:
        raise SettingsError(f"HUB_STREAM_REPLICAS={configured!r}: expected a whole number, 1 to 5") from None
    if not 1 <= replicas <= 5:
        raise SettingsError(f"HUB_STREAM_REPLICAS={replicas}: JetStream allows 1 to 5 replicas")
    return replicas


def intake_worker(worker: int | None = None, workers: int | None = None) -> tuple[int, int]:
    """``hub intake``'s worker number and worker count: ``--worker`` / ``--workers``, else
    ``HUB_INTAKE_WORKER`` / ``HUB_INTAKE_WORKERS`` (systemd's ``hub-intake@.service`` sets them),
    else 0 of 1. Their range is checked by ``hub.intake.IntakeSettings``."""
    found: list[int] = []
    for flag, name, default in ((worker, "HUB_INTAKE_WORKER", 0), (workers, "HUB_INTAKE_WORKERS", 1)):
        raw = os.environ.get(name, "").strip()
        if flag is not None or not raw:
            found.append(default if flag is None else flag)
            continue
        try:
            found.append(int(raw))
        except ValueError:
            raise SettingsError(f"{name} {raw!r}: expected a whole number, e.g. {default}") from None
    return found[0], found[1]


def log_format(explicit: str | None = None) -> str:
    """``text`` (the default) or ``json`` (``HUB_LOG_FORMAT=json``: one JSON object per line)."""
    return explicit or os.environ.get("HUB_LOG_FORMAT", "text")


def nats_client_credentials() -> dict[str, str]:
    """``HUB_NATS_CREDS`` (a .creds file: JWT + nkey) and ``HUB_NATS_TOKEN``: credentials for an
    external NATS beyond the user:password a URL carries (``ops.bootstrap.connect_nats``)."""
    found: dict[str, str] = {}
    if creds := os.environ.get("HUB_NATS_CREDS", "").strip():
        found["user_credentials"] = creds
    if token := os.environ.get("HUB_NATS_TOKEN", "").strip():
        found["token"] = token
    return found
