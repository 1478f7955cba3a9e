"""``/metrics`` in the Prometheus text format (监控指标).

Why hand-written exposition: the hub's figures live in a few plain objects (intake counters, the
projector's position, the watcher's counts) owned by the composition root; rendering them on each
scrape needs no global registry, no background thread and no extra dependency.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric value; ``kind`` is ``counter`` or ``gauge``."""

    name: str
    kind: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


SamplesFn = Callable[[], Awaitable[Iterable[Sample]]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(samples: Iterable[Sample]) -> str:
    """Text exposition format 0.0.4: HELP and TYPE once per metric name, then its samples."""
    lines: list[str] = []
    seen: set[str] = set()
    for sample in sorted(samples, key=lambda s: s.name):
        if sample.name not in seen:
            seen.add(sample.name)
            lines.append(f"# HELP {sample.name} {_escape(sample.help)}")
            lines.append(f"# TYPE {sample.name} {sample.kind}")
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
        lines.append(
            f"{sample.name}{{{labels}}} {sample.value:g}" if labels else f"{sample.name} {sample.value:g}"
        )
    return "\n".join(lines) + "\n"


def metrics_routes(samples: SamplesFn, token: str | None = None) -> list[Route]:
    """``GET /metrics``; with ``token`` (``HUB_METRICS_TOKEN``) only for ``Authorization: Bearer
    <token>`` (Prometheus: ``authorization: {credentials_file: …}``), else 401.

    Why a token at all: the figures name components, queues and dead-letter reasons, which tell an
    intruder how the hub is built and how busy it is; production mode requires one."""

    async def metrics(request: Request) -> PlainTextResponse:
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return PlainTextResponse(
                    "metrics need Authorization: Bearer <HUB_METRICS_TOKEN>\n",
                    401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return PlainTextResponse(render(await samples()), media_type="text/plain; version=0.0.4")

    return [Route("/metrics", metrics)]
