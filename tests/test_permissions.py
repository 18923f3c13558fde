"""What the appliance writes is its own user's only: DATA_DIR 0700 (0750 for DATA_DIR_GROUP),
every file 0600, every socket owner-only; another local user is refused everything, tried for
real with setpriv against a running appliance."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from procs import IN_CI

from appliance.core import permissions
from appliance.core.config import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_what_an_earlier_umask_left_readable_is_taken_back(tmp_path):
    data = tmp_path / "data"
    (data / "spool").mkdir(parents=True)
    for name in ("events.db", "events.db-wal", "status.db", "supervisord.conf", "api-tokens",
                 "spool/spool.db"):
        (data / name).write_text("x")
        os.chmod(data / name, 0o644)
    os.chmod(data, 0o755)
    (data / "appliance.log").write_text("an installer's log")
    os.chmod(data / "appliance.log", 0o640)
    permissions.secure(Settings(data_dir=data))
    assert mode(data) == 0o700 and mode(data / "spool") == 0o700
    assert {mode(p) for p in (data / "events.db", data / "events.db-wal", data / "status.db",
                              data / "supervisord.conf", data / "api-tokens",
                              data / "spool" / "spool.db")} == {0o600}
    assert mode(data / "appliance.log") == 0o640, "a file the appliance does not know is left be"


def test_a_data_dir_group_may_list_data_dir_and_nothing_more(tmp_path):
    group = grp.getgrgid(os.getgid()).gr_name
    permissions.secure(Settings(data_dir=tmp_path / "data", data_dir_group=group))
    assert mode(tmp_path / "data") == 0o750
    assert grp.getgrgid((tmp_path / "data").stat().st_gid).gr_name == group


def test_a_spool_dir_elsewhere_is_not_made_private(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    permissions.secure(Settings(data_dir=tmp_path / "data", spool_dir=shared))
    assert mode(shared) == 0o755


@pytest.mark.e2e
def test_the_api_writes_only_owner_only_files_even_into_a_data_dir_made_0755(start_server):
    server = start_server()  # the harness makes DATA_DIR with the test's umask (0755)
    assert server.get("/").status == 200
    data = Path(server.env["DATA_DIR"])
    assert mode(data) == 0o700
    written = [p for p in data.rglob("*") if p.is_file() and not p.name.endswith(".log")]
    assert written, "the API wrote nothing (its metrics files at least)"
    assert {p.name: oct(mode(p)) for p in written if mode(p) & 0o077} == {}


def other_user_reads(paths: list[Path]) -> dict[str, str]:
    """Each path as the user nobody tries it: read a file, list a directory, connect a socket."""
    script = (
        "import json, os, socket, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        if p.endswith('.sock'):\n"
        "            s = socket.socket(socket.AF_UNIX); s.connect(p); s.close()\n"
        "        elif os.path.isdir(p):\n"
        "            os.listdir(p)\n"
        "        else:\n"
        "            open(p, 'rb').read(1)\n"
        "        out[p] = 'allowed'\n"
        "    except OSError as e:\n"
        "        out[p] = type(e).__name__\n"
        "print(json.dumps(out))\n")
    result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             sys.executable, "-c", script, *map(str, paths)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.e2e
@pytest.mark.broker
def test_another_local_user_is_refused_every_file_and_socket_of_a_running_appliance():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        if IN_CI:
            pytest.fail("this test needs root and setpriv (util-linux) in CI")
        pytest.skip("needs root (to become another user) and setpriv")
    from test_appliance_e2e import Supervised
    # Not under pytest's tmp dir: the test's parent directories must let nobody in, so that
    # only DATA_DIR's own modes decide.
    base = Path(tempfile.mkdtemp(prefix="sts-perm-"))
    os.chmod(base, 0o755)
    app = Supervised(base).start()
    try:
        assert app.get("/")[0] == 200
        app.wait_rows("http_responses", 1)
        everything = sorted(app.data_dir.rglob("*")) + [app.data_dir]
        assert any(p.name == "supervisor.sock" for p in everything)
        assert any(p.name.startswith("api-") and p.name.endswith(".sock") for p in everything)
        answers = other_user_reads(everything)
        assert {p: a for p, a in answers.items() if a == "allowed"} == {}
        for path in everything:
            expected = 0o700 if path.is_dir() else 0o600
            assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}, expected {oct(expected)}"
    finally:
        app.stop()
        shutil.rmtree(base, ignore_errors=True)
