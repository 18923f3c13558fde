"""The dead letters, from GET /events/dead-letters: what the dead-letters screen draws.

``parse_letters`` tolerates any shape of JSON: what is not as expected is left out, never
raised; every text in it is a client's or a producer's, shown as text (safetext.plain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .client import ApplianceClient, ApplianceError


@dataclass(frozen=True)
class Letter:
    id: int
    received_at: str
    reason: str
    replayed: str  # "", "persisted" or "failed"


@dataclass(frozen=True)
class Letters:
    by_reason: tuple[tuple[str, int], ...] = ()
    newest: tuple[Letter, ...] = ()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_letters(document: dict[str, Any]) -> Letters:
    groups = document.get("by_reason") if isinstance(document.get("by_reason"), list) else []
    rows = document.get("dead_letters") if isinstance(document.get("dead_letters"), list) else []
    return Letters(
        by_reason=tuple((str(g.get("reason")), n) for g in groups
                        if isinstance(g, dict) and (n := _int(g.get("count"))) is not None),
        newest=tuple(Letter(i, str(r.get("received_at") or ""), str(r.get("reason") or ""),
                            str(r.get("replay_outcome") or "")) for r in rows
                     if isinstance(r, dict) and (i := _int(r.get("id"))) is not None))


def fetch_letters(client: ApplianceClient) -> tuple[Letters | None, ApplianceError | None]:
    """Blocking: call it from a worker thread. Never raises."""
    try:
        return parse_letters(client.dead_letters()), None
    except ApplianceError as exc:
        return None, exc
    except Exception as exc:  # a client bug must become a banner, not a dead worker
        return None, ApplianceError(ApplianceError.MALFORMED, f"/events/dead-letters: {exc!r}")
