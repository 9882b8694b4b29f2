"""Run a real, private Orthanc (with its DICOMweb plugin) for the PACS tests.

Not a test module: `start_orthanc(workdir)` writes a config with free ports and
storage under `workdir`, launches `/usr/sbin/Orthanc` and waits until its REST
API answers. `stop()` / `start()` take the same server down and back up on the
same ports and storage, so a test can see a PACS outage and its recovery.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ORTHANC_BIN = Path(os.environ.get("EDGERET_ORTHANC", "/usr/sbin/Orthanc"))
DICOMWEB_PLUGIN = Path(
    os.environ.get("EDGERET_ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
)
START_TIMEOUT = 30.0


def _orthanc_bin() -> str | None:
    if ORTHANC_BIN.is_file() and os.access(ORTHANC_BIN, os.X_OK):
        return str(ORTHANC_BIN)
    return shutil.which("Orthanc")


def orthanc_missing_reason() -> str | None:
    """Why a real Orthanc cannot be started here, or None when it can."""
    if _orthanc_bin() is None:
        return f"Orthanc not installed ({ORTHANC_BIN} missing; run tools/install_orthanc.sh as root)"
    if not DICOMWEB_PLUGIN.is_file():
        return f"Orthanc DICOMweb plugin missing ({DICOMWEB_PLUGIN}; apt-get install orthanc-dicomweb)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OrthancInstance:
    """One Orthanc process bound to fixed ports and a fixed storage folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.http_port = _free_port()
        self.dicom_port = _free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.config_path = self.workdir / "orthanc.json"
        self.log_path = self.workdir / "orthanc.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()
        atexit.register(self.stop)  # never leave an Orthanc behind when pytest exits early

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "edgeret-test",
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "EDGERETTEST",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
            "AuthenticationEnabled": False,
            "RemoteAccessAllowed": False,
            # Quiet and fast: no compression, no job persistence, few threads.
            "StorageCompression": False,
            "SaveJobs": False,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 8,
            "DicomAlwaysAllowEcho": False,
            "StableAge": 1,
            "HttpCompressionEnabled": False,
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> OrthancInstance:
        """Launch (again) on the same ports and storage; wait until GET /system answers."""
        if self.running:
            return self
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [_orthanc_bin() or str(ORTHANC_BIN), "--no-jobs", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/system", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} in {START_TIMEOUT:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Graceful SIGTERM (Orthanc flushes its index), SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no Orthanc log)"
        return "\n".join(lines[-n:])


def start_orthanc(workdir: Path) -> OrthancInstance:
    """A fresh Orthanc with its own free ports and storage under `workdir`, already answering."""
    return OrthancInstance(workdir).start()
