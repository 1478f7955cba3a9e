"""The catalogue: which departments the hub knows and which record kinds each may publish.

Why: an event from a department nobody configured, or of a kind its department does not keep, is
refused at the edge (``unknown_department``, ``unknown_type``) rather than opening a case nobody
routes. It comes from configuration (hub.adapters.config), travels with the plausible-time window
(:class:`~hub.messages.time_window.TimeWindow`) and is all :func:`hub.messages.validate` needs to
know of the deployment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field

from hub.messages.time_window import DEFAULT_TIME_WINDOW, TimeWindow


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Which departments exist and which record kinds each may publish (from configuration), and
    the plausible-time window their events' timestamps must lie in (``HUB_TIME_WINDOW``)."""

    kinds: Mapping[str, frozenset[str]]
    window: TimeWindow = dc_field(default=DEFAULT_TIME_WINDOW)

    @classmethod
    def of(cls, kinds: Mapping[str, Iterable[str]], window: TimeWindow | None = None) -> Catalogue:
        return cls({dept: frozenset(ks) for dept, ks in kinds.items()}, window or DEFAULT_TIME_WINDOW)
