"""The stored-state reader (存储状态读取): a stored event's bytes → its JSON, written once.

Why one: a stored state passes through up to three layers on its way in — the personal fields
sealed under their person's key (hub.adapters.privacy.sealing), the JSON compressed, the whole
encrypted with ``HUB_STORE_KEY`` — and every reader of the store that does not go through the
library's ``Mapper.to_domain_event`` (the projector, the erasure planner, the case history) must
peel them in the reverse order. Written by hand in each of them, one of them would sooner or later
forget a layer (a compressed store read as garbage, an erasure shown in one place and not another).

Two readings: :func:`unwrap` peels the store's own layers (decrypt, decompress) and leaves the
personal fields sealed — for readers that look at the seal itself (which key, which paths);
:func:`state_decoder` also opens them (``[erased]`` where the key is gone) — the projector's
decoder, so every rebuild reflects erasures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson


class StoredStateMapper(Protocol):
    """What the reader needs of the application's mapper: its at-rest layers (each may be absent).

    A privacy mapper also has a ``sealer`` whose ``reveal_json`` opens the personal fields."""

    cipher: Any
    compressor: Any


def unwrap(mapper: StoredStateMapper, data: bytes) -> bytes:
    """Stored bytes → the event's JSON, personal fields still sealed (decrypt, then decompress)."""
    if mapper.cipher is not None:
        data = mapper.cipher.decrypt(data)
    if mapper.compressor is not None:
        data = mapper.compressor.decompress(data)
    return bytes(data)


def stored_state(mapper: StoredStateMapper, data: bytes) -> dict[str, Any]:
    """Stored bytes → the event's state as a dict, personal fields still sealed (``_pii_``)."""
    state: dict[str, Any] = orjson.loads(unwrap(mapper, data))
    return state


def state_decoder(mapper: StoredStateMapper) -> Callable[[bytes], bytes] | None:
    """Stored bytes → JSON with personal fields opened; ``None`` when stored states are plain JSON.

    The projector's decoder: with sealed personal fields (a privacy mapper with its sealer) each
    state is unwrapped and unsealed, so an erased person reads ``[erased]`` in every rebuild; else
    only an encrypted or compressed store needs decoding at all."""
    sealer = getattr(mapper, "sealer", None)
    cipher, compressor = mapper.cipher, mapper.compressor
    if sealer is not None:
        reveal: Callable[[bytes], bytes] = sealer.reveal_json

        def decode_sealed(data: bytes) -> bytes:
            return reveal(unwrap(mapper, data))

        return decode_sealed
    if cipher is None and compressor is None:
        return None

    def decode(data: bytes) -> bytes:
        return unwrap(mapper, data)

    return decode
