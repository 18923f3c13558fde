"""The producer side as an API process gets it: its share of the spool, the spools it takes
over, and the checks the API's parent makes once for all of its workers.

SPOOL_MAX_MB is shared out between the API processes (each writes a file of its own,
schema/spool.py); the first one also takes over the spool files of processes that no longer
run (WEB_PROCESSES went down), so what they held is still delivered.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from appliance.core.config import Settings
from appliance.core.kafka import checked_client_config
from appliance.core.process import StartupError
from appliance.pipeline.producer.sink import KafkaEventSink, producer_config
from appliance.pipeline.producer.spool import Spool
from appliance.schema.spool import read_one, spool_file, spool_files


class ProducerFactory:
    """The API's ProducerSide (api/main.py) for one appliance's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check(self, workers: int) -> None:
        """The spool opens and librdkafka takes the KAFKA_* properties: refused once, here,
        rather than by every worker."""
        with spool_errors(self.settings):
            new_spool(self.settings, 0, workers).close()
        check_producer_config(self.settings)

    def sink(self, index: int, workers: int) -> KafkaEventSink:
        with checked_client_config():
            return KafkaEventSink(self.settings, open_spool(self.settings, index, workers))

    def spool_depth(self, index: int) -> int:
        try:
            return read_one(spool_file(self.settings.spool_dir, index)).depth
        except Exception:  # unreadable: nothing known to be waiting there
            return 0


def open_spool(settings: Settings, index: int, workers: int) -> Spool:
    """API process ``index``'s spool; the first one also adopts the spools of processes that
    no longer run."""
    with spool_errors(settings):
        spool = new_spool(settings, index, workers)
        if index == 0:
            for worker, path in spool_files(settings.spool_dir).items():
                if worker >= workers:
                    spool.adopt(path)
    return spool


def new_spool(settings: Settings, index: int, workers: int) -> Spool:
    return Spool(settings.spool_dir, int(settings.spool_max_mb * 1024 * 1024 / workers), index)


@contextlib.contextmanager
def spool_errors(settings: Settings) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # sqlite3.Error or OSError: either way the spool is unusable
        raise StartupError(f"SPOOL_DIR={settings.spool_dir}: cannot open the spool: {exc}") from None


def check_producer_config(settings: Settings) -> None:
    """librdkafka checks its properties when a client is made: make one and drop it at once."""
    from confluent_kafka import Producer

    with checked_client_config():
        Producer({**producer_config(settings), "log_level": 0})
