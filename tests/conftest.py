"""Shared fixtures: run the real CLI in a subprocess, make real distributions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = False):
    """Run `python -m edgeret ARGS` as a user would; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("EDGERET_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "edgeret", *args],
        capture_output=True, text=True, env=full_env, timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"edgeret {' '.join(args)} failed: {proc.stderr}")
    return proc


def run_cli_json(*args: str, env: dict[str, str] | None = None):
    proc = run_cli(*args, "--json", env=env, check=True)
    return json.loads(proc.stdout)


def make_distribution(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]):
    """Write a real installed distribution (dist-info + modules) into `site`.

    importlib.metadata finds it when `site` is on sys.path / PYTHONPATH, exactly
    as it finds a pip-installed plugin.
    """
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[edgeret]\n{lines}\n")
    return site


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    return tmp_path / "site"


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    """A real Orthanc with DICOMweb for the whole session; skips when it is not installed."""
    from orthanc_server import orthanc_missing_reason, start_orthanc

    reason = orthanc_missing_reason()
    if reason and os.environ.get("CI"):  # `make test` installs it; in CI a skip would hide a broken set-up
        pytest.fail(f"CI: {reason} (tools/install_orthanc.sh should have installed it)")
    if reason:
        pytest.skip(reason)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.stop()
