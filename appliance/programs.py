"""What each program of the appliance is made of, and how it starts.

- ``api``: the HTTP API (api/) with the producer side of the pipeline (pipeline/producer/) as
  its event sink: the one place where the two meet.
- ``consumer``: the consumer side of the pipeline (pipeline/consumer/).
- ``agent``: the status agent (agent/).

Each runs inside core.process.run: logs, metrics, tracing, signals, one-line startup errors.
"""

from __future__ import annotations

from appliance.core import process
from appliance.core.config import Settings


def run_api(settings: Settings, worker: str | None = None) -> int:
    """``worker``: the slot a worker process was started with (api/workers/slot.py)."""
    from appliance.api.main import run
    from appliance.api.workers.slot import WorkerSlot
    from appliance.pipeline.producer.factory import ProducerFactory
    slot = WorkerSlot.parse(worker) if worker else None
    return run(settings, slot, ProducerFactory(settings))


def run_consumer(settings: Settings) -> int:
    from appliance.pipeline.consumer.main import consume
    return process.run(settings, "consumer", lambda runtime: consume(runtime, settings))


def run_agent(settings: Settings) -> int:
    from appliance.agent.main import watch
    return process.run(settings, "agent", lambda runtime: watch(runtime, settings))
