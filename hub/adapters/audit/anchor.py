"""The audit chain's head anchored outside the store (锚定): a NATS KV bucket with its history.

Why outside: the chain (hub.adapters.audit.chain) proves that no stored row changed *relative to
its head*; someone able to rewrite the store could rewrite the head with it. A copy of the head
put where the store's writer cannot change it — the ``HUB_AUDIT`` bucket in NATS, each put kept as
one revision — lets ``hub audit verify`` confirm the store against a head recorded earlier. ``hub
up`` anchors the head whenever it moved (:func:`anchor_forever`); ``hub audit head --anchor`` on
demand.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from hub.adapters.audit.chain import AuditChain, Head
from hub.vocabulary import APPLICATION_NAME

log = logging.getLogger("hub.adapters.audit")

ANCHOR_BUCKET = "HUB_AUDIT"
"""NATS KV bucket holding the anchored chain heads (history kept: each put is a notarised point)."""
ANCHOR_HISTORY = 64


def anchor_key(ledger_name: str) -> str:
    return f"{ledger_name.lower()}.chain_head"


async def _bucket(js: Any) -> Any:
    from nats.js.errors import BucketNotFoundError

    try:
        return await js.key_value(ANCHOR_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=ANCHOR_BUCKET, history=ANCHOR_HISTORY)


async def anchor_head(js: Any, head: Head, name: str = APPLICATION_NAME) -> int:
    """Put the chain head into the NATS KV bucket; returns the KV revision."""
    kv = await _bucket(js)
    doc = {**head.to_dict(), "anchored_at": datetime.now(UTC).isoformat()}
    return int(await kv.put(anchor_key(name), orjson.dumps(doc)))


async def anchored_head(js: Any, name: str = APPLICATION_NAME) -> Head | None:
    from nats.js.errors import KeyNotFoundError

    kv = await _bucket(js)
    try:
        entry = await kv.get(anchor_key(name))
    except KeyNotFoundError:
        return None
    return Head.from_dict(orjson.loads(entry.value)) if entry.value else None


async def anchor_forever(
    nc: Any, recorder: Any, name: str = APPLICATION_NAME, interval: float = 10.0
) -> None:
    """For ``hub up``: anchor the chain head in NATS KV whenever it moved (every ``interval`` s)."""
    chain = AuditChain(recorder)
    js = nc.jetstream()
    last: Head | None = None
    while True:
        try:
            head = await asyncio.to_thread(chain.head)
            if head != last and head.count:
                await anchor_head(js, head, name)
                last = head
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("audit anchor: could not anchor the chain head; retrying")
        await asyncio.sleep(interval)
