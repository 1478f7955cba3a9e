"""个人信息 policy: which fields of which stored events are personal data, and whose they are.

Why a policy file (``privacy.toml``, overridable in ``HUB_CONFIG_DIR``) and not code: what counts
as personal information (个人信息) — the reporter's name, phone and id number, the free text of
every case, the sensitive personal information (敏感个人信息) of psychological-crisis and court
cases — and how long it is kept (保存期限, ``[retention] days``) are the data-protection officer's
decisions, made per deployment, not the hub's. The policy only names fields by dotted path; the
sealer (``sealing``) and the erasure planner (``erasure``) both read it, so they can never
disagree about which field is personal or who a report is about.

Why ``normalise``: a person is recognised by a value as written by a clerk (``138-0000 0000``);
spaces, dashes and letter case must not make another person, or one erasure would miss reports.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.adapters.config.loading import ConfigError, config_file

__all__ = ["PrivacyPolicy", "get_path", "load_policy", "normalise", "set_path"]


@dataclass(frozen=True, slots=True)
class PrivacyPolicy:
    """Which fields of which stored events are personal data, and how a person is recognised."""

    sealed: Mapping[str, tuple[str, ...]]
    sensitive_kinds: Mapping[str, tuple[str, ...]]
    subject: tuple[str, ...]
    retention_days: int = 0
    free_text: tuple[str, ...] = ()
    free_text_prefix: str = ""

    def covers(self, topic: str) -> bool:
        """True when events of ``topic`` may have sealed fields (cheap: the mapper asks per event)."""
        return topic in self.sealed or bool(
            self.free_text and self.free_text_prefix and topic.startswith(self.free_text_prefix)
        )

    def names_person(self, topic: str) -> bool:
        """Events of ``topic`` are sealed under the key of the person they name (reports)."""
        return topic in self.sealed

    def paths(self, topic: str, state: Mapping[str, Any]) -> tuple[str, ...]:
        base = self.sealed.get(topic, ())
        if self.free_text and self.free_text_prefix and topic.startswith(self.free_text_prefix):
            base = base + tuple(p for p in self.free_text if p not in base)
        if topic in self.sealed:
            extra = self.sensitive_kinds.get(str(state.get("kind")))
            if extra:
                base = base + tuple(p for p in extra if p not in base)
        return base

    @property
    def all_paths(self) -> tuple[str, ...]:
        """Every path any event may have sealed (what the read models mask after an erasure)."""
        out: list[str] = []
        for group in (*self.sealed.values(), self.free_text, *self.sensitive_kinds.values()):
            out.extend(p for p in group if p not in out)
        return tuple(out)

    def subject_of(self, state: Mapping[str, Any]) -> str | None:
        """The person an event is about (``leaf:normalised value``), or None when anonymous."""
        for path in self.subject:
            value = get_path(state, path)
            if isinstance(value, str) and value.strip():
                return f"{path.rsplit('.', 1)[-1]}:{normalise(value)}"
        return None

    @property
    def subject_kinds(self) -> tuple[str, ...]:
        return tuple(p.rsplit(".", 1)[-1] for p in self.subject)


def normalise(value: str) -> str:
    """Spaces and dashes do not make another person (``138-0000 0000`` is ``13800000000``)."""
    return "".join(value.split()).replace("-", "").upper()


def load_policy(config_dir: Path | None = None) -> PrivacyPolicy:
    path = config_file("privacy.toml", config_dir)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc

    def paths(table: str) -> dict[str, tuple[str, ...]]:
        entries = raw.get(table, {})
        if not isinstance(entries, dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) and p for p in v) for v in entries.values()
        ):
            raise ConfigError(f"{path}: [{table}] maps names to lists of dotted field paths")
        return {k: tuple(v) for k, v in entries.items()}

    subject = raw.get("subject", {}).get("paths", [])
    days = raw.get("retention", {}).get("days", 0)
    if not isinstance(days, int) or days < 0:
        raise ConfigError(f"{path}: [retention] days must be a whole number ≥ 0 (0 = keep until erased)")
    free = raw.get("free_text", {})
    free_paths, prefix = free.get("paths", []), free.get("prefix", "")
    if not (
        isinstance(free, dict)
        and isinstance(prefix, str)
        and isinstance(free_paths, list)
        and all(isinstance(p, str) and p for p in free_paths)
        and (prefix or not free_paths)
    ):
        raise ConfigError(
            f'{path}: [free_text] needs prefix = "<topic prefix>" and paths = [dotted field paths]'
        )
    return PrivacyPolicy(
        paths("sealed"), paths("sensitive_kinds"), tuple(subject), days, tuple(free_paths), prefix
    )


def get_path(state: Mapping[str, Any], path: str) -> Any:
    node: Any = state
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def set_path(state: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, copying the nested dicts on the way (the domain event keeps its own)."""
    parts = path.split(".")
    node = state
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        child = dict(child)
        node[part] = child
        node = child
    node[parts[-1]] = value
