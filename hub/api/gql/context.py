"""What every resolver gets: the read-model port, the NATS handles, configuration and the caller.

Why a dataclass built once by ops: the API never constructs adapters (design §3); ``ops.runtime``
hands over the ``ReadModels`` implementation, the NATS connection and the configured catalogue,
grid tree and departments. Per request only the caller (``Principal``) changes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from graphql import GraphQLError

from hub.api.gql.auth import AuthError, Principal, TokenBook
from hub.messages import Catalogue
from hub.views import GridTreeView, ReadModels

T = TypeVar("T")


RecordAccess = Callable[[str, UUID, Sequence[str], str, str, Hashable], None]
"""(role, case id, personal fields shown, principal, operation, request key) → recorded; ops injects
the access log (``hub.adapters.audit.AccessLog.record_access``), which merges one request's cases."""


@dataclass(frozen=True, slots=True)
class DepartmentInfo:
    code: str
    name: str
    name_en: str
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """Refused before execution (see ``hub.api.gql.limits``) or by the resolvers."""

    max_depth: int = 10
    max_aliases: int = 20
    max_tokens: int = 3000
    max_cost: int = 20_000
    max_page: int = 200
    mutation_timeout_s: float = 5.0
    max_bytes: int = 100_000
    """A query document (and an HTTP body: twice this) above this many bytes is refused unparsed."""
    as_of_cost: int = 5_000
    """What one ``asOf``/``asOfPosition`` adds to an operation's estimated cost (≤ 3 per operation)."""
    rewinds_per_minute: int = 10
    """Rewinds per token and minute for roles without ``history:read`` (screen, operator)."""


@dataclass
class ApiContext:
    """Process-wide state of the GraphQL API (one per process; replicas each have their own)."""

    views: ReadModels
    tokens: TokenBook
    catalogue: Catalogue
    departments: Mapping[str, DepartmentInfo]
    grids: GridTreeView | None = None
    nc: Any = None  # nats.aio.client.Client: command publishes, projection notices, dead letters
    limits: Limits = field(default_factory=Limits)
    source: str = "hub.graphql"
    """CloudEvents ``source`` of operator commands published by this API."""
    record_access: RecordAccess | None = None
    """The read access log (访问留痕): called when an answer reveals personal data, with the fields
    shown; masked answers reveal nothing and are not recorded (issue 15)."""
    rewinds: RewindLimiter = field(init=False, repr=False)
    """Per-token rate limit of rewinds (from ``limits.rewinds_per_minute``)."""
    _cache: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict)
    _snapshots: OrderedDict[Hashable, ReadModels] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rewinds = RewindLimiter(self.limits.rewinds_per_minute)

    def cached(self, key: Hashable, compute: Callable[[], T], size: int = 512) -> T:
        """Memoise an answer whose key includes the projection position (so it can never be stale)."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > size:
                self._cache.popitem(last=False)
        return value

    async def rewound(self, as_of: datetime | None, as_of_position: int | None) -> ReadModels:
        """The live read models, or the past: awaited, so a build in progress holds no worker thread.

        Read models that share snapshots per position (``rewind_future``, projections.queries:
        built one at a time by a low-priority builder) are awaited; others are built in a worker
        thread by :meth:`at`.
        """
        if as_of is None and as_of_position is None:
            return self.views
        if as_of is not None and as_of_position is not None:
            raise GraphQLError("give asOf or asOfPosition, not both", extensions={"code": "BAD_USER_INPUT"})
        rewind = getattr(self.views, "rewind_future", None)
        if rewind is None:
            return await run(self.at, as_of, as_of_position)
        try:
            pending = await run(lambda: rewind(position=as_of_position, time=as_of))
        except RuntimeError as exc:
            if type(exc).__name__ != "RewindBusy":  # (projections.queries; the API does not import it)
                raise
            raise GraphQLError(str(exc), extensions={"code": "REWIND_BUSY", "retry_after_s": 10}) from exc
        shared: ReadModels = await asyncio.wrap_future(pending)
        return shared

    def at(self, as_of: datetime | None, as_of_position: int | None) -> ReadModels:
        """The live read models, or a snapshot (kept for reuse: building one replays the prefix)."""
        if as_of is None and as_of_position is None:
            return self.views
        if as_of is not None and as_of_position is not None:
            raise GraphQLError("give asOf or asOfPosition, not both", extensions={"code": "BAD_USER_INPUT"})
        key = ("pos", as_of_position) if as_of_position is not None else ("time", as_of)
        with self._lock:
            snap = self._snapshots.get(key)
            if snap is not None:
                self._snapshots.move_to_end(key)
                return snap
        if as_of_position is not None:
            snap = self.views.as_of(position=as_of_position)
        else:
            snap = self.views.as_of(time=as_of)
        with self._lock:
            self._snapshots[key] = snap
            while len(self._snapshots) > 8:
                _, old = self._snapshots.popitem(last=False)
                close = getattr(old, "close", None)
                if close is not None:
                    close()
        return snap


class RewindLimiter:
    """A sliding one-minute window of rewinds per token (principal): ``take`` says when to retry.

    Why per token and not per address: screens sit behind one proxy, and a token is what the hub
    gave a wall; a runaway page on one wall must not take the others' rewinds.
    """

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._seen: dict[Hashable, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> float | None:
        """Count one rewind for ``key``; ``None`` when allowed, else seconds until the next is."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and seen[0] <= now - self.window_s:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return max(seen[0] + self.window_s - now, 0.001)
            seen.append(now)
            if len(self._seen) > 10_000:  # forget idle tokens (bounded memory)
                for k in [k for k, v in self._seen.items() if not v]:
                    del self._seen[k]
            return None


def api(info: Any) -> ApiContext:
    ctx: ApiContext = info.context["api"]
    return ctx


def caller(info: Any) -> Principal:
    """The authenticated caller of this request (HTTP header, WS handshake header or init payload)."""
    return caller_of(info.context)


def caller_of(context: Any) -> Principal:
    """The caller of a request from its context (GraphQLError UNAUTHENTICATED without a valid token)."""
    found: Principal | None = context.get("principal")
    if found is not None:
        return found
    try:
        found = authenticate(context)
    except AuthError as exc:
        raise GraphQLError(str(exc), extensions={"code": "UNAUTHENTICATED"}) from exc
    context["principal"] = found
    return found


def authenticate(context: Mapping[str, Any]) -> Principal:
    tokens = context["api"].tokens
    params = context.get("connection_params") or {}
    header = None
    if isinstance(params, dict):
        header = params.get("Authorization") or params.get("authorization")
        if header is None and params.get("token"):
            header = f"Bearer {params['token']}"
    if header is None:
        header = context["request"].headers.get("authorization")
    principal: Principal = tokens.authenticate(header)
    return principal


async def run(fn: Callable[..., T], *args: Any) -> T:
    """DuckDB queries block: run them in a worker thread (the port is thread-safe)."""
    return await asyncio.to_thread(fn, *args)
