"""Per capture: send the learned stream, or JPEG XL in the same bytes when that is better.

Issue 22: on real photographs the learned codec often loses to JPEG XL at the
same size. The camera therefore codes both: the learned stream at the chosen
rate, then JPEG XL fitted to at most the learned stream's bytes
(:func:`edgeret.codec.classical.fit_jxl`); it decodes both and sends the one
closer to the original by MS-SSIM (PSNR breaks a tie, and decides alone for
images under MS-SSIM's 176-pixel minimum). Because the JPEG XL candidate never
takes more bytes than the learned one, what is sent is never worse (MS-SSIM)
than JPEG XL would give in the same bytes.

What was sent and both scores go into the capture's metadata
(:func:`Choice.meta`), with the device time each step took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeret.codec.ert.container import Header, encode_stream
from edgeret.codec.session import Encoded, image_for

FALLBACKS = ("jxl", "off")
MSSSIM_MIN_SIDE = 176  # five scales of an 11x11 window


def scores(reference: np.ndarray, decoded: np.ndarray) -> dict[str, float | None]:
    """MS-SSIM (None below 176 px) and PSNR (dB) of a decoded image against the original."""
    from edgeret.metrics import psnr
    from edgeret_plugins.tasks.codec.processing import ms_ssim  # numpy + OpenCV, no torch

    peak = 255.0 if reference.dtype == np.uint8 else 65535.0
    small = min(reference.shape[:2]) < MSSSIM_MIN_SIDE
    return {"ms_ssim": None if small else round(ms_ssim(reference, decoded, peak), 6),
            "psnr": round(psnr(reference, decoded, peak), 3)}


def _key(s: dict[str, float | None]) -> tuple[float, float]:
    return (s["ms_ssim"] if s["ms_ssim"] is not None else 0.0, s["psnr"])


@dataclass
class Choice:
    header: Header
    payloads: list[bytes]
    sent: str  # "learned" or "jxl"
    learned: dict[str, Any]  # bytes, ms_ssim, psnr of the learned stream
    jxl: dict[str, Any] | None  # the same for the JPEG XL candidate; None if none was made
    seconds: dict[str, float] = field(default_factory=dict)  # device time per step
    note: str | None = None  # why JPEG XL was not tried, if it was not

    @property
    def stream(self) -> bytes:
        return encode_stream(self.header, self.payloads)

    def meta(self) -> dict[str, Any]:
        """What travels in the capture's metadata (``meta["codec_choice"]``)."""
        seconds = {**self.seconds, "total": sum(self.seconds.values())}
        out = {"sent": self.sent, "learned": self.learned, "jxl": self.jxl,
               "seconds": {k: round(v, 4) for k, v in seconds.items()}}
        return {**out, "note": self.note} if self.note else out


def choose(image: np.ndarray, learned: Encoded, decode_learned: Callable[[Encoded], np.ndarray], *,
           fallback: str = "jxl", source: str = "<array>") -> Choice:
    """The stream to send for ``image`` given its learned encoding; ``decode_learned`` decodes it
    (the hub's decoder, run on the device to measure what the hub will see)."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    learned_bytes = len(encode_stream(learned.header, learned.payloads))
    keep = Choice(learned.header, list(learned.payloads), "learned", {"bytes": learned_bytes}, None,
                  {"learned_encode": learned.seconds})
    if fallback == "off":
        return keep
    from edgeret.codec.classical import fit_jxl, unavailable_reason

    reason = unavailable_reason()
    if reason:
        keep.note = f"JPEG XL fallback off: {reason}"
        return keep
    # the learned codec may have adapted the image (alpha dropped, a grey RGB export made grey):
    # JPEG XL codes and both are scored against that same image
    reference = image_for(learned.model, image, source)
    start = time.perf_counter()
    candidate = fit_jxl(reference, learned.header.modality, learned_bytes)
    keep.seconds["jxl_fit"] = time.perf_counter() - start
    if candidate is None:
        keep.note = f"no JPEG XL codestream fits in {learned_bytes} bytes"
        return keep
    start = time.perf_counter()
    learned_image = decode_learned(learned)
    keep.seconds["learned_decode"] = time.perf_counter() - start
    from edgeret.codec.classical import decode_classical

    start = time.perf_counter()
    jxl_image = decode_classical(candidate.header, candidate.payload, source=source)
    keep.learned.update(scores(reference, learned_image))
    jxl = {"bytes": len(candidate.stream), "distance": round(candidate.distance, 4),
           "encodes": candidate.tries, **scores(reference, jxl_image)}
    keep.seconds["jxl_decode_and_score"] = time.perf_counter() - start  # and scoring the learned one
    keep.jxl = jxl
    if _key(jxl) > _key(keep.learned):
        keep.header, keep.payloads, keep.sent = candidate.header, [candidate.payload], "jxl"
    return keep
