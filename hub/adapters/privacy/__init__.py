"""I/O pieces of personal-data protection (个人信息保护): erasure outside the event store."""

from hub.adapters.privacy.streams import StreamErasure, erase_from_stream, erase_from_streams

__all__ = ["StreamErasure", "erase_from_stream", "erase_from_streams"]
