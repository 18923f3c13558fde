"""The API's workers as one: /kafka/status and /kafka/flush answer for all of them.

With WEB_PROCESSES > 1 (workers/parent.py) each worker has its own producer and spool, and the
kernel hands a connection to any of them. So each worker also listens on a Unix socket in
DATA_DIR (api-N.sock, owner only) where its siblings ask two things: its producer's status,
and a flush. The worker that got the request adds the answers to its own: counters summed,
"connected" only when every worker is (schema/producer_status.py says how each field merges).
A sibling that does not answer (it is restarting) is named in "workers_unreachable" and makes
the state at most DEGRADED; a flush then counts what its spool file holds as not flushed.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from appliance.api.http.sink import EventSink, Headers
from appliance.core import jsontext
from appliance.core.layout import DataLayout
from appliance.schema import events
from appliance.schema.producer_status import ProducerStatus

log = logging.getLogger("appliance.peers")
TIMEOUT = 2.0  # seconds for a status answer; a flush gets its own timeout on top


def ask(path: Path, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """One question to a sibling; None when it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(jsontext.dumps(request) + b"\n")
            with sock.makefile("rb") as reply:
                answer = events.loads_strict(reply.readline())
    except (OSError, events.InvalidJson):
        return None
    return answer if isinstance(answer, dict) else None


class PeerServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers the siblings' questions about this worker's own producer."""

    daemon_threads = True

    def __init__(self, path: Path, sink: EventSink) -> None:
        path.unlink(missing_ok=True)  # a socket file left by a worker that was killed
        self.sink = sink
        self.path = path
        super().__init__(str(path), _Handler)
        os.chmod(path, 0o600)
        self._thread = threading.Thread(target=self.serve_forever, args=(0.2,),
                                        name="api-peers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.path.unlink(missing_ok=True)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            request = events.loads_strict(self.rfile.readline())
            sink = self.server.sink
            if request.get("op") == "flush":
                answer: dict[str, Any] = {"remaining": sink.flush(float(request["timeout"]))}
            else:
                answer = sink.status().to_json()
        except (events.InvalidJson, AttributeError, KeyError, TypeError, ValueError) as exc:
            answer = {"error": str(exc)}
        self.wfile.write(jsontext.dumps(answer) + b"\n")


class WorkerGroupSink:
    """The EventSink of one worker: events go to its own sink, reads cover every worker."""

    enabled = True

    def __init__(self, own: EventSink, index: int, count: int, layout: DataLayout,
                 spool_depth=lambda index: 0) -> None:
        """``spool_depth(i)``: what worker i's spool file holds, for a flush it cannot answer."""
        self.own, self.index = own, index
        self.peers = {i: layout.api_socket(i) for i in range(count) if i != index}
        self.server = PeerServer(layout.api_socket(index), own)
        self.spool_depth = spool_depth

    @property
    def kafka_up(self) -> bool:
        return self.own.kafka_up

    def start(self) -> None:
        self.own.start()
        self.server.start()

    def close(self, timeout: float = 5.0) -> None:
        self.server.close()
        self.own.close(timeout)

    def emit(self, event: dict[str, Any], headers: Headers | None = None,
             durable: bool = False) -> str:
        return self.own.emit(event, headers, durable)

    def emit_all(self, pairs: list[tuple[dict[str, Any], Headers | None]],
                 durable: bool = False) -> str:
        return self.own.emit_all(pairs, durable)

    def emit_raw(self, messages: list[tuple[bytes | None, bytes, Headers | None]]) -> str:
        return self.own.emit_raw(messages)

    def status(self) -> ProducerStatus:
        with ThreadPoolExecutor(max_workers=max(1, len(self.peers))) as pool:
            answers = {i: pool.submit(ask, path, {"op": "status"}, TIMEOUT)
                       for i, path in self.peers.items()}
            own = self.own.status()
            others = {i: None if a.result() is None else ProducerStatus.from_json(a.result())
                      for i, a in answers.items()}
        return ProducerStatus.merge(own, others, self.index)

    def flush(self, timeout: float) -> int:
        """Every worker flushes at the same time; what none of them delivered, summed."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.peers))) as pool:
            answers = {i: pool.submit(ask, path, {"op": "flush", "timeout": timeout},
                                      timeout + TIMEOUT) for i, path in self.peers.items()}
            remaining = self.own.flush(timeout)
            for i, answer in answers.items():
                reply = answer.result()
                remaining += reply["remaining"] if reply and "remaining" in reply else self.spool_depth(i)
        return remaining
