"""I/O pieces of personal-information protection (个人信息保护): sealing, keys, erasure.

Why a package: personal fields are protected by crypto-shredding (加密销毁), and its four parts
change for different reasons — ``policy`` (which fields are personal data, from ``privacy.toml``),
``keys`` (the per-person keyring in the store's database), ``sealing`` (the mapper sealing those
fields before they are recorded) and ``erasure`` (deleting a person's keys and recording it) —
plus ``streams``, erasure outside the event store (the raw events still buffered in NATS).

Importing this package imports only ``streams`` (re-exported below); the store-side modules pull
in ``cryptography`` and the event store, so each is imported by name where it is needed.
"""

from hub.adapters.privacy.streams import StreamErasure, erase_from_stream, erase_from_streams

__all__ = ["StreamErasure", "erase_from_stream", "erase_from_streams"]
