"""The API program: one process, or the parent of WEB_PROCESSES workers, or one of those workers.

One process binds, starts its event sink, serves and shuts down in order (serving/server.py).
With more than one API process the parent binds once, checks once what every worker would
refuse, and runs the workers (workers/parent.py); each worker serves the socket it inherited.

The Kafka side of the events is the pipeline's (pipeline/producer/), handed in as a
``ProducerSide`` by the program that builds the API (appliance/programs.py), so this package
never imports the pipeline.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Protocol

from appliance.api.http.access import warn_if_open
from appliance.api.http.app import create_app
from appliance.api.http.host import host_info
from appliance.api.http.services import Services
from appliance.api.http.sink import DisabledSink, EventSink
from appliance.api.serving.guards import ensure_fd_limit
from appliance.api.serving.server import ApiServer, bind
from appliance.api.workers.parent import Workers
from appliance.api.workers.peers import WorkerGroupSink
from appliance.api.workers.slot import WorkerSlot
from appliance.core import process
from appliance.core.config import Settings
from appliance.core.process import Runtime, StartupError
from appliance.schema.tokens import (
    TokenFileError,
    Tokens,
    configured,
    ensure_generated,
    token_file,
)

log = logging.getLogger("appliance.api")
# With every core busy, the API accepted requests faster than the consumer could persist them:
# whole appliance under wrk on 2 cores, nice 0: 3,614 req/s, 2,543 persisted/s, event -> row
# p99 3.3 s and growing (the spool would fill); nice 5: 3,294 req/s, 3,242 persisted/s, p99
# 261 ms (nice 2: p99 3.0 s; nice 3: 0.8 s; nice 10: no better than 5). A lower priority changes
# nothing while a core is free.
API_NICENESS = 5


class ProducerSide(Protocol):
    """What the API needs of the pipeline's producer side (Kafka configured)."""

    def check(self, workers: int) -> None:
        """Raise StartupError for what every one of ``workers`` processes would refuse."""

    def sink(self, index: int, workers: int) -> EventSink:
        """The event sink of API process ``index`` of ``workers``; StartupError if it cannot be."""

    def spool_depth(self, index: int) -> int:
        """What API process ``index``'s spool file holds (it may not be running)."""


def run(settings: Settings, slot: WorkerSlot | None, producers: ProducerSide) -> int:
    """The API as the process it was started as: a worker (``slot``), the parent of workers,
    or the one process."""
    if slot is None:
        yield_to_the_consumer(settings)  # workers inherit it
        if settings.api_processes > 1:
            return process.run(settings, "api",
                               lambda runtime: run_parent(runtime, settings, producers))
    else:
        slot.die_with_parent()
    return process.run(settings, "api",
                       lambda runtime: serve(runtime, settings, build_sink(settings, slot, producers),
                                             slot),
                       pod_ip=host_info(settings).pod_ip)


def yield_to_the_consumer(settings: Settings) -> None:
    """When this appliance also runs the consumer, persisting what was accepted comes first."""
    if "consumer" in settings.programs:
        os.nice(API_NICENESS)


def run_parent(runtime: Runtime, settings: Settings, producers: ProducerSide) -> int:
    """The parent of the API workers: what every worker would refuse is refused once, here."""
    prepare_tokens(settings)
    ensure_fd_limit(settings.connection_limit)  # the workers inherit the raised limit
    sock, admin_sock = listen(settings), listen_admin(settings)
    if settings.kafka_enabled:
        producers.check(settings.api_processes)
    return Workers(settings, sock, settings.api_processes, admin_sock).run(runtime)


def build_sink(settings: Settings, slot: WorkerSlot | None, producers: ProducerSide) -> EventSink:
    if not settings.kafka_enabled:
        if slot is None or slot.index == 0:
            log.warning("KAFKA_BROKERS not set: Kafka is off, events are not recorded")
        return DisabledSink()
    if slot is None:
        return producers.sink(0, 1)
    own = producers.sink(slot.index, slot.count)
    try:
        return WorkerGroupSink(own, slot.index, slot.count, settings.layout, producers.spool_depth)
    except OSError as exc:
        raise StartupError(f"DATA_DIR={settings.data_dir}: cannot listen on "
                           f"{settings.layout.api_socket(slot.index)}: {exc.strerror or exc} "
                           f"(a Unix socket path must be shorter than 108 bytes)") from None


def prepare_tokens(settings: Settings) -> None:
    """The generated tokens file when no token is configured; a tokens file that cannot be read
    is a one-line startup error; and the log says where the tokens are, never one of them."""
    try:
        ensure_generated(settings)
        Tokens(settings)
    except (OSError, TokenFileError) as exc:
        raise StartupError(f"API tokens: {exc}") from None
    configured_in = ("API_TOKEN/API_TOKENS" if not settings.api_tokens_file and configured(settings)
                     else str(token_file(settings)))
    warn_if_open(settings, configured_in)


def listen(settings: Settings) -> socket.socket:
    try:
        return bind(settings.host, settings.port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: "
                           f"{exc.strerror or exc} (check HOST and PORT)", code=1) from None


def listen_admin(settings: Settings) -> socket.socket | None:
    """The admin plane's listener (api/http/access.py), or None with ADMIN_PORT=off."""
    if settings.admin_port is None:
        return None
    try:
        return bind(settings.admin_host, settings.admin_port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.admin_host}:{settings.admin_port}: "
                           f"{exc.strerror or exc} (check ADMIN_HOST and ADMIN_PORT, or set "
                           f"ADMIN_PORT=off)", code=1) from None


def serve(runtime: Runtime, settings: Settings, sink: EventSink,
          slot: WorkerSlot | None = None) -> int:
    """Serve until SIGTERM; the sink is started once the port is ours and closed last."""
    if slot is None:
        prepare_tokens(settings)
    sock = slot.listening_socket() if slot else listen(settings)
    admin_sock = slot.admin_socket() if slot else listen_admin(settings)
    services = Services(settings, sink=sink)
    sink.start()
    server = ApiServer(create_app(settings, services), settings, services.lifecycle, sock,
                       runtime, on_stopped=sink.close, balance=slot.balance() if slot else None,
                       admin_sock=admin_sock)
    return server.serve()
