"""The files under DATA_DIR that are not settings of their own.

The databases, the spool and the metrics directory can be moved with DB_PATH, SPOOL_DIR,
STATUS_DB_PATH and METRICS_DIR; these always live in DATA_DIR, so two appliances with different
DATA_DIRs never share one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    def api_socket(self, worker: int) -> Path:
        """Where API worker ``worker`` answers its siblings (api/workers/peers.py)."""
        return self.root / f"api-{worker}.sock"

    @property
    def supervisord_conf(self) -> Path:
        """conf/supervisord.conf with only the programs this appliance runs (`up` writes it)."""
        return self.root / "supervisord.conf"

    @property
    def supervisord_pid(self) -> Path:
        return self.root / "supervisord.pid"

    @property
    def pause_flag(self) -> Path:
        """Present while the agent recycles the embedded broker (schema/pause.py)."""
        return self.root / "kafka-paused"

    @property
    def tokens(self) -> Path:
        """The API tokens the appliance made when none was configured (schema/tokens.py)."""
        return self.root / "api-tokens"

    @property
    def consumer_report(self) -> Path:
        """The consumer's report to the agent (schema/consumer_report.py)."""
        return self.root / "consumer-state.json"

    @property
    def switches(self) -> Path:
        """The drain toggle and the run-time fault, shared by the API processes (schema/switches.py)."""
        return self.root / "switches.json"
