"""Prototype, for bench/process_manager.py only (not production code): one API process of N
that supervisord runs itself, instead of the API's own parent (appliance/api/workers/parent.py).

    [program:api]
    command=python bench/reuseport_api.py %(process_num)s N
    numprocs=N
    process_name=%(program_name)s-%(process_num)s

Each process is the API's normal entry point (`python -m appliance api`) with WEB_PROCESSES=1
and two changes made from here, without touching appliance/:

- the listening socket gets SO_REUSEPORT before its bind, so N processes bind the same port
  and the kernel spreads new connections over their N sockets (a hash of the 4-tuple);
- the event sink is built as for worker INDEX of N (api/workers/slot.py's WorkerSlot has these
  two fields): its own spool file SPOOL_DIR/spool-INDEX.db with SPOOL_MAX_MB / N, process 0
  adopting the spools of processes >= N, with the embedded broker partition INDEX, and (Kafka
  on) the sibling questions of api/workers/peers.py over DATA_DIR/api-INDEX.sock, which need
  nothing from the parent.

The admin plane's listener is left out (ADMIN_PORT=off: N processes cannot bind one port
without SO_REUSEPORT on it too); its routes answer on the public port with a token.

What it leaves out is listed in docs/process-manager.md.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's appliance


def reuseport_bind(host: str, port: int) -> socket.socket:
    """appliance.api.serving.server.bind with SO_REUSEPORT set before the bind."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(address)
    return sock


def main() -> int:
    index, count = int(sys.argv[1]), int(sys.argv[2])
    os.environ["WEB_PROCESSES"] = "1"  # no parent: this process serves
    os.environ["ADMIN_PORT"] = "off"

    from appliance.api import main as api_main
    from appliance.cli import main as cli

    api_main.bind = reuseport_bind  # api.main.listen calls it by this name
    build_sink = api_main.build_sink
    slot = SimpleNamespace(index=index, count=count)  # what build_sink reads of a WorkerSlot
    api_main.build_sink = lambda settings, _slot, producers: build_sink(settings, slot, producers)
    return cli(["api"])


if __name__ == "__main__":
    sys.exit(main())
