"""Forensics on raw bytes: where in a poison message the fault lies, without trusting it.

Why apart from validation: a message that cannot be decoded (bytes that are not UTF-8, a number no
64-bit type holds, nesting a thousand levels deep, a NUL character) must still be answered naming
its field, and one bad record in an HTTP batch must not sink its neighbours. The decoder says only
*that* it failed; these functions find *where*, by splitting members without decoding them
(``msgspec.Raw``) or by a token scan that neither decodes nor recurses. They run only for events
already rejected (slow by design), never on the intake's hot path, and never raise an answer into
an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

MAX_DEPTH = 64
_RAW_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')


def as_bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")


def _undecodable(member: bytes) -> bool:
    try:
        msgspec.json.decode(member)
    except Exception:
        return True
    return False


def _locate(raw: bytes, broken: Any, depth: int = 0) -> str:
    """The path (``data.t``, ``attachments.3``) of the innermost member of JSON ``raw`` for which
    ``broken(member_bytes)`` holds, or "" when ``raw`` is not an object or array it can split.
    Members are split without decoding them (``msgspec.Raw``), so a member that cannot be
    decoded (bad UTF-8, a number out of range) can be pointed at. Runs only for rejected events."""
    if depth >= 16:
        return ""
    members: Iterable[tuple[Any, Any]]
    try:
        members = _RAW_MEMBERS.decode(raw).items()
    except Exception:
        try:
            members = enumerate(_RAW_ITEMS.decode(raw))
        except Exception:
            return ""
    for key, member in members:
        sub = bytes(member)
        if broken(sub):
            inner = _locate(sub, broken, depth + 1)
            return f"{key}.{inner}" if inner else str(key)
    return ""


def undecodable_path(raw: bytes) -> str:
    """The path (``title``, ``reporter.name``, ``3.title``) of the innermost member of the JSON
    object or array ``raw`` that cannot be decoded (bytes that are not UTF-8, a number out of
    range, nesting too deep), or "" when there is none or ``raw`` cannot be split at all. For
    answering a poison record naming its field (HTTP ingest, file import); slow, so only on errors."""
    try:
        return _locate(raw, _undecodable) or deep_path(raw)
    except Exception:  # a locator must never turn an answer into an exception
        return ""


def undecodable_member_path(raw: bytes) -> str:
    """The path of the innermost member of JSON ``raw`` that cannot be decoded, or "" (no
    fallback to the nesting scan, unlike :func:`undecodable_path`): for a schema error whose
    message cannot say where (a number out of range, a member inside an array)."""
    return _locate(raw, _undecodable)


def non_utf8_path(raw: bytes) -> str:
    """The path of the innermost member of JSON ``raw`` holding bytes that are not UTF-8, or ""."""
    return _locate(raw, _raises_unicode)


def _raises_unicode(member: bytes) -> bool:
    try:
        msgspec.json.decode(member)
    except UnicodeDecodeError:
        return True
    except Exception:
        return False
    return False


def deep_path(raw: bytes) -> str:
    """Where JSON ``raw`` first nests deeper than :data:`MAX_DEPTH`: the keys (and array indexes)
    leading there, at most 8 of them; "" when it never does. A token scan, not a parse: it must
    not recurse itself."""
    path: list[str] = []
    counters: list[int | None] = []  # per open container: array index, or None inside an object
    expect_key = False
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token in (b"{", b"["):
            counters.append(None if token == b"{" else 0)
            path.append("0" if token == b"[" else "")
            expect_key = token == b"{"
            if len(counters) > MAX_DEPTH:
                break
        elif token in (b"}", b"]"):
            if counters:
                counters.pop()
                path.pop()
            expect_key = False
        elif token == b",":
            top = counters[-1] if counters else None
            if top is not None:
                counters[-1] = top + 1
                path[-1] = str(top + 1)
            else:
                expect_key = True
        elif token == b":":
            expect_key = False
        elif expect_key and counters:
            path[-1] = token[1:-1].decode("utf-8", "replace")
            expect_key = False
    else:
        return ""
    shown = [p for p in path if p != ""]
    return ".".join(shown[:8]) + (".…" if len(shown) > 8 else "")


def split_array(raw: bytes) -> list[bytes] | None:
    """The members of the JSON array ``raw`` as bytes, found by a token scan that neither decodes
    nor recurses, so one member with bad bytes, a huge number or nesting a thousand levels deep
    can be judged apart from its neighbours (HTTP ingest). None when ``raw`` is not one array."""
    start = len(raw) - len(raw.lstrip())
    if raw[start : start + 1] != b"[":
        return None
    members: list[bytes] = []
    depth = 0
    begin = start + 1
    for match in _TOKEN.finditer(raw, start):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
        elif token in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                last = raw[begin : match.start()]
                if last.strip():
                    members.append(last.strip())
                elif members:
                    return None  # a trailing comma
                return members if not raw[match.end() :].strip() else None
        elif token == b"," and depth == 1:
            member = raw[begin : match.start()].strip()
            if not member:
                return None
            members.append(member)
            begin = match.end()
    return None


def nul_path(raw: bytes | str) -> str | None:
    """Path of the first key or string holding U+0000, or None (``\\u0000`` was literal text)."""
    try:
        tree = msgspec.json.decode(raw)
    except Exception:
        return None
    stack: list[tuple[str, Any]] = [("", tree)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return where
        elif isinstance(node, dict):
            for key, value in node.items():
                path = f"{where}.{key}" if where else str(key)
                if "\x00" in key:
                    return path
                stack.append((path, value))
        elif isinstance(node, list):
            stack.extend((f"{where}.{i}" if where else str(i), v) for i, v in enumerate(node))
    return None
