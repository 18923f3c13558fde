"""The pause flag: DATA_DIR/kafka-paused, present while the agent recycles the embedded broker.

Written by the agent's recycler; read by the API's relay before each turn of sending, which
sends nothing while it is there (the events wait in the spool). `up` and the agent remove a
flag left behind by an agent that was killed mid-recycle.
"""

from __future__ import annotations

from pathlib import Path


class PauseFlag:
    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self) -> None:
        self.path.touch()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def is_set(self) -> bool:
        return self.path.exists()
