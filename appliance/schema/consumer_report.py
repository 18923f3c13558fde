"""The consumer's report: DATA_DIR/consumer-state.json, rewritten about once a second.

Written by the consumer, read by the agent (process.consumer, the database probe and the
broker recycler). Replaced atomically, so a reader never sees half of it; an old or unreadable
report reads as None and the agent says the consumer is not reporting.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.core.timefmt import age_s, utc_now_iso


@dataclass(frozen=True)
class ConsumerReport:
    at: str = field(default_factory=utc_now_iso)
    assigned_partitions: list[int] = field(default_factory=list)
    persisted: dict[str, int] = field(default_factory=dict)  # rows per table since start
    dead_letters: int = 0
    db_failing: bool = False
    last_db_error: str | None = None
    db_errors: int = 0
    lag: int | None = None  # events on its partitions not read yet (None: no assignment)
    stalled: bool = False
    no_progress_s: float = 0.0
    stalls: int = 0
    last_persisted_at: str | None = None
    pruned: dict[str, int] = field(default_factory=dict)  # rows deleted by retention, per table
    oldest_event_at: str | None = None
    db_size_mb: float | None = None

    def write(self, path: Path) -> None:
        """Replace the report at ``path``; OSError when the disk refuses."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> "ConsumerReport | None":
        try:
            data = json.loads(path.read_text())
            return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})
        except (OSError, ValueError, TypeError):
            return None

    @property
    def age_s(self) -> float | None:
        try:
            return age_s(self.at)
        except (TypeError, ValueError):
            return None
