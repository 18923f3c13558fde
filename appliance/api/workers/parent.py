"""WEB_PROCESSES API processes on one port: a small parent binds the socket and runs the workers.

Why: one Python process serves on one core at a time (the GIL), and the API's request threads
share theirs with the spool writer and the relay. Measured on 2 cores (wrk -t2 -c32, Kafka up,
the consumer running, against a bare Waitress app in the same run): one API process 0.41 of
bare, two 0.83 (4,300-4,500 req/s for 5,100-5,800), each worker ~72 % of a core.

Each worker is a whole API as one process was: its own Waitress, event sink, spool file
(SPOOL_DIR/spool-N.db) and Kafka producer, serving the listening socket it inherited; they share
the connections out evenly (serving/balance.py). What must be the same whichever worker answers
(/kafka/status, /kafka/flush) the workers ask one another (workers/peers.py).

The parent: binds (so PORT=0 works and a bind error is one line), starts the workers, starts
again one that dies (after a pause that doubles to 8 s while it keeps dying), passes SIGTERM
and SIGINT on and exits when they all have. A worker dies with its parent (PR_SET_PDEATHSIG):
kill -9 of the API under supervisord stops every worker, as it stops a one-process API. A
worker that exits during its first start (a startup error) stops the API with its exit code.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from appliance.api.serving.balance import ConnectionBalance, shared_memory
from appliance.api.workers.slot import WorkerSlot
from appliance.core import metrics
from appliance.core.config import Settings
from appliance.core.process import Runtime

log = logging.getLogger("appliance.workers")
FIRST_START = 5.0  # seconds: a worker that exits sooner after the API started is a startup error
PAUSE, MAX_PAUSE, STEADY = 0.5, 8.0, 30.0  # restart pause, its cap, and the uptime that resets it
TICK = 0.2  # seconds between two looks at the workers


class Worker:
    """One worker process as the parent sees it."""

    def __init__(self, slot: WorkerSlot) -> None:
        self.slot = slot
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.pause = PAUSE
        self.due = 0.0  # when to start it again after it died

    def start(self) -> None:
        # Its own process group: Ctrl-C in a terminal reaches the parent only, which passes
        # one SIGINT on (a second would tell the worker to skip its shutdown waits).
        self.process = subprocess.Popen([sys.executable, "-m", "appliance", "api", "--worker",
                                         self.slot.text()],
                                        pass_fds=self.slot.inherited,
                                        process_group=0)
        self.started = time.monotonic()

    def signal(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signum)

    def exited(self) -> int | None:
        return self.process.poll() if self.process else None


class Workers:
    """Start ``count`` workers on ``sock``; keep them running until a signal; then wait."""

    def __init__(self, settings: Settings, sock: socket.socket, count: int,
                 admin_sock: socket.socket | None = None) -> None:
        for inherited in (sock, admin_sock):
            if inherited is not None:
                inherited.set_inheritable(True)
        self.settings = settings
        self.sock, self.admin_sock = sock, admin_sock
        parent, balance = os.getpid(), shared_memory(count)
        admin_fd = -1 if admin_sock is None else admin_sock.fileno()
        self.workers = [Worker(WorkerSlot(i, count, sock.fileno(), parent, balance, admin_fd))
                        for i in range(count)]
        self.balance = ConnectionBalance(balance, 0, count)
        self.launched = time.monotonic()

    def run(self, runtime: Runtime) -> int:
        if runtime.signals:  # asked to stop while starting
            return 0
        for worker in self.workers:
            worker.start()
        log.info("api workers started", extra={"workers": len(self.workers),
                                               "pids": [w.process.pid for w in self.workers]})
        passed = 0  # signals passed on so far
        while True:
            if runtime.signals > passed:
                passed = runtime.signals
                for worker in self.workers:
                    worker.signal(signal.SIGTERM)
            failed = self._look(stopping=passed > 0)
            if failed is not None:
                return self._stop_all(failed)
            if passed and all(w.exited() is not None for w in self.workers):
                log.info("api workers stopped")
                # A negative code: the SIGTERM passed on reached a worker still starting.
                return max((w.exited() for w in self.workers if w.exited() > 0), default=0)
            time.sleep(TICK)  # a signal's handler only counts it: seen on the next turn

    def _look(self, stopping: bool) -> int | None:
        """Start again the workers that died; an exit code if one failed its first start."""
        now = time.monotonic()
        for worker in self.workers:
            code = worker.exited()
            if code is None or stopping:
                continue
            if worker.due == 0.0:  # just noticed
                metrics.mark_dead(worker.process.pid)
                self.balance.forget(worker.slot.index)
                first_start = worker.started - self.launched < 1.0
                if code > 0 and first_start and now - self.launched < FIRST_START:
                    log.error("api worker failed to start", extra={"worker": worker.slot.index,
                                                                   "exit_code": code})
                    return code or 1
                lived = now - worker.started
                worker.pause = PAUSE if lived >= STEADY else min(MAX_PAUSE, worker.pause * 2)
                worker.due = now + (PAUSE if lived >= STEADY else worker.pause)
                log.warning("api worker exited: starting it again", extra={
                    "worker": worker.slot.index, "exit_code": code, "pid": worker.process.pid,
                    "uptime_s": round(lived, 1), "restart_in_s": round(worker.due - now, 1)})
            elif now >= worker.due:
                worker.due = 0.0
                worker.start()
        return None

    def _stop_all(self, code: int) -> int:
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout + 10
        while any(w.exited() is None for w in self.workers) and time.monotonic() < deadline:
            time.sleep(TICK)
        for worker in self.workers:
            worker.signal(signal.SIGKILL)
        return code
