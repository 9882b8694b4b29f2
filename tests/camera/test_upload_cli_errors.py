"""`edgeret agent` and `edgeret serve` refuse bad arguments and unusable folders in one line, exit 2."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli


def _one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    return lines[0]


def test_agent_and_serve_refuse_bad_arguments_in_one_line(tmp_path):
    bad_hub = run_cli("agent", "--inbox", str(tmp_path / "i"), "--spool", str(tmp_path / "s"),
                      "--hub", "ftp://x", "--once")
    assert "is not an http:// or https:// URL" in _one_error_line(bad_hub)
    bad_pacs = run_cli("serve", "--store", str(tmp_path / "h"), "--port", "0", "--pacs", "pacs:8042")
    assert bad_pacs.returncode == 2 and "--pacs" in bad_pacs.stderr


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_refuses_a_port_that_is_not_one(tmp_path, port):
    proc = run_cli("serve", "--store", str(tmp_path / "h"), "--port", port)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        f"edgeret serve: error: argument --port: '{port}' is not a TCP port (0 to 65535)"


@pytest.mark.parametrize("folder", ["inbox", "spool", "store"])
def test_a_folder_that_cannot_be_made_is_named_with_its_role(tmp_path, folder):
    (tmp_path / "a-file").write_text("not a folder")
    blocked = tmp_path / "a-file" / folder
    paths = {name: blocked if name == folder else tmp_path / name for name in ("inbox", "spool", "store")}
    if folder == "store":
        proc = run_cli("serve", "--store", str(paths["store"]), "--port", "0")
    else:
        proc = run_cli("agent", "--inbox", str(paths["inbox"]), "--spool", str(paths["spool"]),
                       "--hub", "http://127.0.0.1:9", "--once")
    role = {"inbox": "inbox", "spool": "spool", "store": "hub store"}[folder]
    assert _one_error_line(proc).startswith(f"edgeret: error: {blocked}: cannot create the {role} (")


def test_a_second_agent_on_a_spool_stops_and_a_killed_one_leaves_no_stale_lock(tmp_path):
    args = ["agent", "--inbox", str(tmp_path / "inbox"), "--spool", str(tmp_path / "spool"),
            "--hub", "http://127.0.0.1:9", "--settle", "0"]
    first = subprocess.Popen([sys.executable, "-m", "edgeret", *args, "--poll", "0.2"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tmp_path / "spool" / ".lock"
    try:
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert time.monotonic() < deadline and first.poll() is None, "the first agent did not start"
            time.sleep(0.1)
        second = run_cli(*args, "--once")
        assert _one_error_line(second) == (f"edgeret: error: {tmp_path / 'spool'}: this spool is in use by "
                                           f"process {first.pid}; stop it first, or give another folder")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    after_kill = run_cli(*args, "--once", "--max-wait", "0")
    assert after_kill.returncode == 0, after_kill.stderr  # the kernel dropped the dead agent's lock
