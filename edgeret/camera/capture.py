"""One capture file -> its id, its ``.ert`` stream and the metadata that travels with it.

The capture id is the sha256 of the capture file's bytes: the same capture
processed twice (a restart after a crash) gets the same id, so neither the
spool nor the hub ever holds it twice.

The stream is the learned codec's, or JPEG XL in at most the same bytes when
that decodes closer to the capture (``fallback="jxl"``, :mod:`edgeret.codec.choice`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.codec.bundle_encoder import BundleEncoder
from edgeret.codec.choice import FALLBACKS, choose
from edgeret.codec.session import CodecSession, Encoded, modality_of, stream_stats
from edgeret.errors import InputError
from edgeret.images.read_write import detect_format, read_image
from edgeret.runtime.grading import Grader

# what a camera may put in the capture's side-car JSON (IMAGE.json beside IMAGE.png)
PATIENT_FIELDS = ("patient_id", "patient_name", "laterality", "study_description")


@dataclass(frozen=True)
class Prepared:
    capture_id: str
    stream: bytes
    meta: dict[str, Any]


def _read_capture(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror})") from None


def sidecar_of(path: Path) -> Path:
    return path.with_suffix(".json")


def patient_from_dicom(data: bytes) -> dict[str, str]:
    """A DICOM capture's own patient fields (the camera already knows the patient); {} if none."""
    import io
    import warnings

    import pydicom  # present: reading the DICOM pixels needed it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    found = {"patient_id": str(ds.get("PatientID", "")), "patient_name": str(ds.get("PatientName", "")),
             "laterality": str(ds.get("ImageLaterality", ds.get("Laterality", ""))),
             "study_description": str(ds.get("StudyDescription", ""))}
    return {k: v[:64] for k, v in found.items() if v and (k != "laterality" or v in ("L", "R"))}


def read_sidecar(path: Path, data: bytes) -> dict[str, str]:
    """The capture's patient fields: its side-car JSON, else a DICOM capture's (``data``) own header,
    else {}."""
    sidecar = sidecar_of(path)
    if not sidecar.exists():
        return patient_from_dicom(data) if detect_format(data) == "DICOM" else {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(sidecar, f"not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(sidecar, "must hold a JSON object")
    unknown = sorted(set(data) - set(PATIENT_FIELDS))
    if unknown:
        raise InputError(sidecar, f"unknown field(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(PATIENT_FIELDS)}")
    bad = [k for k, v in data.items() if not isinstance(v, str) or len(v) > 64]
    if bad:
        raise InputError(sidecar, f"field(s) {', '.join(bad)} must be text of at most 64 characters")
    if data.get("laterality", "R") not in ("L", "R"):
        raise InputError(sidecar, "laterality must be 'L' or 'R'")
    return data


def scale_for_quality(quality: dict[str, Any]) -> str | int:
    """The codec's ``scale`` for a capture the device graded: "auto" for a good one, else 1.

    A blurred capture is oversampled too, but the hub grades its quality again on the decoded image:
    it must see the camera's blur, not the blur plus a halving (benchmarks/grading-after-codec.md).
    """
    if quality.get("task") is None:  # no quality model on this device
        return "auto"
    return "auto" if quality.get("quality", quality.get("grade")) == "good" else 1


class PluginCodec:
    """The codec plugin's own ONNX encoders, one per modality, on the device's backend."""

    def __init__(self, session: CodecSession, rate: str | float | None = None) -> None:
        self.session, self.rate = session, rate

    def encode(self, image: np.ndarray, modality: str, source: str, scale: str | int = "auto") -> Encoded:
        model, rate = self.session.catalog.choose(modality, "factorized", self.rate)
        return self.session.encode(image, model, rate, source=source, scale=scale)

    def decode(self, encoded: Encoded) -> np.ndarray:
        """What the hub will decode from this stream (to compare it with JPEG XL on the device)."""
        return self.session.decode(encoded.header, encoded.payloads, encoded.model, encoded.rate).image


class BundleCodec:
    """An exported bundle's encoder (one modality, the profile's image size; e.g. INT8 on LiteRT)."""

    def __init__(self, encoder: BundleEncoder, rate: str | float | None = None) -> None:
        self.encoder, self.point = encoder, encoder.rate(rate)
        self._decoder: CodecSession | None = None

    def encode(self, image: np.ndarray, modality: str, source: str, scale: str | int = "auto") -> Encoded:
        if modality != self.encoder.model.modality:
            raise InputError(source, f"is a {modality} image; the bundle's encoder ({self.encoder.root}) "
                                     f"codes {self.encoder.model.modality} images")
        return self.encoder.encode(image, self.point, source=source, scale=scale)

    def decode(self, encoded: Encoded) -> np.ndarray:
        """The hub's decoder graph (fp32 ONNX, as the hub runs it), loaded on first use."""
        if self._decoder is None:
            from edgeret.plugin.host import get_host

            self._decoder = CodecSession(None, get_host().backend("onnxruntime"), threads=1)
        return self._decoder.decode(encoded.header, encoded.payloads, encoded.model, encoded.rate).image


class CaptureProcessor:
    """Quality-grade and encode captures on the device (no torch)."""

    def __init__(self, codec: PluginCodec | BundleCodec, grader: Grader, *, device: str = "",
                 half_scale: bool = True, fallback: str = "jxl") -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.codec, self.grader, self.device = codec, grader, device
        self.half_scale = half_scale  # False: never code a capture at half resolution
        self.fallback = fallback  # "jxl": send JPEG XL when it beats the learned codec in the same bytes

    def fallback_problem(self) -> str | None:
        """Why the JPEG XL fallback asked for cannot run here (the agent says so once), or None."""
        if self.fallback == "off":
            return None
        from edgeret.codec.classical import unavailable_reason

        reason = unavailable_reason()
        return f"JPEG XL fallback unavailable, sending the learned codec only: {reason}" if reason else None

    def prepare(self, path: Path) -> Prepared:
        data = _read_capture(path)
        capture_id = hashlib.sha256(data).hexdigest()
        image = read_image(path)  # before the side-car: a broken DICOM is reported by the image reader
        patient = read_sidecar(path, data)
        if image.ndim == 3 and image.shape[2] not in (3, 4):
            raise InputError(path, f"holds {image.shape[0]} frames; the agent sends one B-scan or photo "
                                   "per file")
        modality = modality_of(image)
        quality = self.grader.grade(image, modality, str(path))
        scale = scale_for_quality(quality) if self.half_scale else 1
        encoded = self.codec.encode(image, modality, str(path), scale)
        choice = choose(image, encoded, self.codec.decode, fallback=self.fallback, source=str(path))
        stream = choice.stream
        meta = {"source_name": path.name, "device": self.device, "modality": modality,
                "captured_at": path.stat().st_mtime, "encoded_at": time.time(),
                "device_quality": quality, "patient": patient,
                "stream": stream_stats(len(stream), choice.header), "codec_choice": choice.meta()}
        return Prepared(capture_id, stream, meta)


def quality_summary(quality: dict[str, Any]) -> str:
    """A few words for the operator: the grade and whether a retake is advised."""
    if quality.get("task") is None:
        return "not graded on the device"
    label = quality.get("grade", quality.get("quality", quality.get("result")))
    retake = quality.get("gradable") is False
    return f"{quality.get('task')}: {label}" + (" -> retake advised" if retake else "")
