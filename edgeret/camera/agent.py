"""The agent's loop: inbox -> (grade, encode) -> spool -> hub, and what happens when things fail.

A capture leaves the inbox only after its stream is committed to the spool; a
stream leaves the spool only when the hub echoes its sha256. A capture that
cannot be read goes to ``failed/`` with a one-line reason and the loop goes on:
one bad file must not stop a camera.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeret.camera.capture import CaptureProcessor, quality_summary, sidecar_of
from edgeret.camera.spool import Spool
from edgeret.camera.upload import Uploader
from edgeret.errors import EdgeretError
from edgeret.images.read_write import IMAGE_SUFFIXES
from edgeret.link.atomic import make_folders, write_bytes_atomic
from edgeret.link.retry import Backoff

EXIT_QUEUED = 3  # --once ended with streams still queued (safe on disk; the next run sends them)
EXIT_FAILED = 1  # some captures could not be read, or the hub refused some streams for good


@dataclass
class Tally:
    queued: int = 0
    sent: int = 0
    failed: int = 0  # captures that could not be read / encoded
    rejected: int = 0  # streams the hub refused for good
    messages: list[str] = field(default_factory=list)


class Agent:
    def __init__(self, inbox: Path, spool: Spool, processor: CaptureProcessor, uploader: Uploader, *,
                 settle: float = 2.0, backoff: Backoff | None = None, min_free_mb: float = 200.0,
                 log: Callable[[str], None] = print) -> None:
        self.inbox, self.spool, self.processor, self.uploader = Path(inbox), spool, processor, uploader
        self.done, self.failed = self.inbox / "done", self.inbox / "failed"
        make_folders("inbox", self.inbox, self.done, self.failed)
        self.settle = settle
        self.min_free = min_free_mb * 2**20  # below this, captures wait in the inbox (on the camera disk)
        self.backoff = backoff or Backoff()
        self.next_attempt = 0.0
        self.log = log
        self.tally = Tally()
        problem = processor.fallback_problem()
        if problem:  # said once, not per capture: the camera still works, without the safety net
            self.log(f"warning: {problem}")

    # --- inbox -> spool ---------------------------------------------------------------

    def ready_captures(self) -> list[Path]:
        """Image files the camera has finished writing (unchanged for ``settle`` seconds)."""
        now = time.time()
        ready = []
        for path in sorted(self.inbox.iterdir()):
            if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                if now - path.stat().st_mtime >= self.settle:
                    ready.append(path)
            except FileNotFoundError:  # the camera moved it away meanwhile
                continue
        return ready

    def ingest(self) -> int:
        """Grade, encode and spool every ready capture; returns how many were queued."""
        queued = 0
        for path in self.ready_captures():
            free = shutil.disk_usage(self.spool.root).free
            if free < self.min_free:  # a half-written spool file would be worse than a capture that waits
                self.log(f"spool disk has {free / 2**20:.0f} MB free (< {self.min_free / 2**20:.0f} MB): "
                         f"captures wait in {self.inbox} until uploads free space")
                break
            try:
                prepared = self.processor.prepare(path)
            except EdgeretError as exc:
                self._set_aside(path, str(exc))
                continue
            if self.spool.put(prepared.capture_id, prepared.stream, prepared.meta):
                queued += 1
            stats = prepared.meta["stream"]
            quality = quality_summary(prepared.meta["device_quality"])
            self.log(f"{path.name}: {quality}; {stats['bytes']} bytes, {stats['bpp']:.3f} bpp, "
                     f"{stats['compression_ratio']:.0f}:1{choice_summary(prepared.meta.get('codec_choice'))}"
                     f" -> queued {prepared.capture_id[:12]}")
            self._move(path, self.done)
        self.tally.queued += queued
        return queued

    def _set_aside(self, path: Path, reason: str) -> None:
        self.tally.failed += 1
        self.tally.messages.append(reason)
        self.log(f"error: {reason} (moved to {self.failed.name}/)")
        moved = self._move(path, self.failed)
        write_bytes_atomic(moved.with_name(moved.name + ".error.txt"), (reason + "\n").encode())

    def _move(self, path: Path, folder: Path) -> Path:
        """Move a capture (and its side-car) without overwriting an earlier one of the same name."""
        target = folder / path.name
        n = 1
        while target.exists():
            target = folder / f"{path.stem}.{n}{path.suffix}"
            n += 1
        sidecar = sidecar_of(path)
        if sidecar.exists():
            os.replace(sidecar, sidecar_of(target))
        os.replace(path, target)
        return target

    # --- spool -> hub -----------------------------------------------------------------

    def drain(self) -> int:
        """Upload queued streams until the queue is empty or the hub fails; returns how many remain."""
        items = self.spool.pending()  # read the queue once per pass, not once per upload
        done = 0
        for item in items:
            if time.monotonic() < self.next_attempt:
                break
            outcome = self.uploader.send(item.capture_id, item.read_stream(), item.meta)
            name = item.meta.get("source_name", "?")
            if outcome.kind == "delivered":
                self.spool.ack(item.capture_id)
                self.backoff.succeeded()
                self.tally.sent += 1
                self._receipt(item.capture_id, name, outcome.receipt or {})
                done += 1
            elif outcome.kind == "rejected":
                self.spool.reject(item.capture_id, outcome.detail)
                self.tally.rejected += 1
                self.tally.messages.append(outcome.detail)
                self.log(f"hub refused {name} ({item.capture_id[:12]}): {outcome.detail}; kept in rejected/")
                done += 1
            else:
                delay = self.backoff.failed()
                self.next_attempt = time.monotonic() + delay
                self.log(f"upload of {name} failed: {outcome.detail}; {len(items) - done} queued, "
                         f"next try in {delay:.1f} s")
                break
        return len(items) - done

    def _receipt(self, capture_id: str, name: str, receipt: dict) -> None:
        findings = receipt.get("findings") or {}
        said = findings.get("result", findings.get("grade", ""))
        self.log(f"sent {name} ({capture_id[:12]}): hub {receipt.get('status', 'stored')} it"
                 + (f", {findings.get('task')}: {said}" if findings.get("task") else ""))
        line = json.dumps({"capture_id": capture_id, "source_name": name, "at": time.time(),
                           "hub": receipt}, sort_keys=True)
        with open(self.spool.root / "sent.jsonl", "a", encoding="utf-8") as f:  # audit trail
            f.write(line + "\n")

    # --- the loop ---------------------------------------------------------------------

    def run_once(self, max_wait: float = 60.0) -> int:
        """Ingest the inbox, then upload until the queue is empty or ``max_wait`` s have passed."""
        self.ingest()
        deadline = time.monotonic() + max_wait
        while self.drain() and time.monotonic() < deadline:
            time.sleep(max(0.05, min(self.next_attempt, deadline) - time.monotonic()))
        remaining = len(self.spool.pending()) + len(self.ready_captures())
        if remaining:
            self.log(f"{remaining} capture(s) not yet delivered, queued in {self.spool.queue} or waiting in "
                     f"{self.inbox} (safe on disk; sent on the next run)")
            return EXIT_QUEUED
        return EXIT_FAILED if self.tally.failed or self.tally.rejected else 0

    def run_forever(self, poll: float = 1.0, should_stop: Callable[[], bool] = lambda: False) -> None:
        while not should_stop():
            self.ingest()
            backing_off = self.drain() and self.next_attempt > time.monotonic()
            time.sleep(max(0.05, min(poll, self.next_attempt - time.monotonic())) if backing_off else poll)


def choice_summary(choice: dict | None) -> str:
    """", JPEG XL (MS-SSIM 0.9912 vs learned 0.9850)" when the camera sent JPEG XL; "" otherwise."""
    if not choice or choice.get("sent") != "jxl":
        return ""
    jxl, learned = choice["jxl"], choice["learned"]
    if jxl.get("ms_ssim") is not None and learned.get("ms_ssim") is not None:
        return f", JPEG XL (MS-SSIM {jxl['ms_ssim']:.4f} vs learned {learned['ms_ssim']:.4f})"
    return f", JPEG XL (PSNR {jxl['psnr']:.2f} dB vs learned {learned['psnr']:.2f} dB)"
