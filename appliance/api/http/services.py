"""What the routes need besides settings, gathered once per process; tests pass their own."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.api.http.access import Access
from appliance.api.http.faults import DelaySlots, FaultPolicy
from appliance.api.http.host import HostInfo, host_info
from appliance.api.http.lifecycle import Lifecycle
from appliance.api.http.sink import DisabledSink, EventSink
from appliance.core.config import Settings
from appliance.core.version import git_commit
from appliance.schema.switches import SwitchFile, SwitchReader
from appliance.schema.tokens import Tokens


@dataclass
class Services:
    """What the routes need besides settings; tests pass their own."""

    settings: Settings
    sink: EventSink = field(default_factory=DisabledSink)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    host: HostInfo | None = None
    commit: str | None = None
    tokens: Tokens | None = None

    def __post_init__(self) -> None:
        if self.host is None:
            self.host = host_info(self.settings)
        if self.commit is None:
            self.commit = self.settings.git_commit or git_commit()
        if self.tokens is None:
            self.tokens = Tokens(self.settings)
        self.access = Access(self.settings, self.tokens)
        self.switch_file = SwitchFile(self.settings.layout.switches)
        self.switches = SwitchReader(self.switch_file)
        # /delay and injected delays share these: GET / always keeps WEB_THREADS - slots.
        self.delay_slots = DelaySlots(min(self.settings.delay_concurrency, self.settings.web_threads - 1))
        self.faults = FaultPolicy(self.settings, self.switches, self.delay_slots)
