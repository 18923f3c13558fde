"""Which API worker this process is (WEB_PROCESSES > 1), and what it inherited from the parent.

The parent (workers/parent.py) starts each worker as ``simple-time-service api --worker SLOT``;
a process started without ``--worker`` is not a worker.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
from dataclasses import dataclass

from appliance.api.serving.balance import ConnectionBalance

PR_SET_PDEATHSIG = 1
SLOT_TEXT = re.compile(r"\d{1,9}(/\d{1,9}){4}/(-1|\d{1,9})")


@dataclass(frozen=True)
class WorkerSlot:
    """Which worker this process is, and what it inherited."""

    index: int
    count: int
    fd: int  # the listening socket
    parent: int
    balance_fd: int  # serving/balance.py: the connections each worker holds
    admin_fd: int = -1  # the admin plane's listening socket; -1: none (ADMIN_PORT=off)

    def text(self) -> str:
        return (f"{self.index}/{self.count}/{self.fd}/{self.parent}/{self.balance_fd}/"
                f"{self.admin_fd}")

    @classmethod
    def parse(cls, text: str) -> "WorkerSlot":
        """The slot of ``text()``; ValueError for anything else."""
        if not SLOT_TEXT.fullmatch(text):
            raise ValueError(f"expected index/count/fd/parent/balance_fd/admin_fd, not {text!r}")
        return cls(*(int(part) for part in text.split("/")))

    def listening_socket(self) -> socket.socket:
        return socket.socket(fileno=self.fd)

    def admin_socket(self) -> socket.socket | None:
        return None if self.admin_fd < 0 else socket.socket(fileno=self.admin_fd)

    @property
    def inherited(self) -> tuple[int, ...]:
        """The descriptors the worker inherits from the parent."""
        return tuple(fd for fd in (self.fd, self.balance_fd, self.admin_fd) if fd >= 0)

    def balance(self) -> ConnectionBalance:
        return ConnectionBalance(self.balance_fd, self.index, self.count)

    def die_with_parent(self) -> None:
        """SIGKILL when the parent dies, and exit now if it already has."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != self.parent:
            os._exit(1)
