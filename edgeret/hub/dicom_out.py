"""Hub side: a decoded capture as a DICOM Secondary Capture instance for a PACS.

pydicom is imported inside the functions: the device runtime has no pydicom and
must still be able to import the hub package.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeret.errors import EdgeretError

if TYPE_CHECKING:
    import pydicom

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
MODALITIES = {"oct": "OPT", "fundus": "OP"}
MAX_COMMENTS = 10240  # ImageComments is LT: at most 10240 characters
DERIVATION = "Decoded by the edgeret hub from a learned-codec (.ert) stream; lossy compression"
# LossyImageCompressionMethod: the standard's defined terms name JPEG, JPEG-LS, JPEG 2000, MPEG... (PS3.3
# C.7.6.1.1.5.1); a learned codec has none, and defined terms may be extended (CS: 16 characters)
LOSSY_METHOD = "EDGERET_LEARNED"
# A JPEG XL stream is stored decoded, uncompressed: few PACS know JPEG XL's transfer syntax yet. Its defined
# term follows the standard's pattern for JPEG 2000 ("ISO_15444_1"): JPEG XL is ISO/IEC 18181-1.
JPEG_XL_METHOD = "ISO_18181_1"
DERIVATIONS = {JPEG_XL_METHOD: "Decoded by the edgeret hub from a JPEG XL codestream in an .ert stream; "
                               "lossy compression"}


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise EdgeretError("writing DICOM needs the 'dicom' extra: pip install 'edgeret[dicom]'") from None
    return pydicom


def capture_uids(capture_id: str) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs, the same for every call with this capture id.

    Deterministic so that forwarding a capture again yields the same instance,
    which a PACS de-duplicates instead of storing a copy.
    """
    _check_capture_id(capture_id)
    generate_uid = _pydicom().uid.generate_uid
    study, series, sop = (generate_uid(entropy_srcs=["edgeret", level, capture_id.lower()])
                          for level in ("study", "series", "instance"))
    return str(study), str(series), str(sop)


def _check_capture_id(capture_id: str) -> None:
    if not isinstance(capture_id, str) or not capture_id:
        raise ValueError("capture_id must be a non-empty hex string")
    try:
        int(capture_id, 16)
    except ValueError:
        raise ValueError(f"capture_id must be a hex string, got {capture_id[:40]!r}") from None


def _pixel_layout(image: np.ndarray, bit_depth: int) -> tuple[int, str, int]:
    """(samples per pixel, photometric interpretation, bits allocated); ValueError if unsupported."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if not isinstance(bit_depth, (int, np.integer)) or isinstance(bit_depth, bool):
        raise ValueError(f"bit_depth must be an integer, got {bit_depth!r}")
    if image.dtype == np.uint8:
        if bit_depth != 8:
            raise ValueError(f"uint8 image needs bit_depth 8, got {bit_depth}")
        if image.ndim == 2:
            return 1, "MONOCHROME2", 8
        if image.ndim == 3 and image.shape[2] == 3:
            return 3, "RGB", 8
        raise ValueError(f"uint8 image must be (H, W) gray or (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype == np.uint16:
        if image.ndim != 2:
            raise ValueError(f"uint16 image must be (H, W) gray, got shape {image.shape}")
        if not 9 <= bit_depth <= 16:
            raise ValueError(f"uint16 image needs bit_depth 9..16, got {bit_depth}")
        top = int(image.max())
        if top >= 1 << bit_depth:
            raise ValueError(f"image has value {top}, more than bit_depth {bit_depth} can hold")
        return 1, "MONOCHROME2", 16
    raise ValueError(f"image dtype must be uint8 or uint16, got {image.dtype}")


PATIENT_KEYS = ("patient_id", "patient_name", "laterality", "study_description")


def check_patient(patient: Any) -> dict[str, str]:
    """Patient fields as given, or ValueError: a PACS must not get a silently altered identity. The hub
    runs this on the camera's metadata before decoding (edgeret.hub.intake) and again when writing."""
    if not isinstance(patient, Mapping):
        raise ValueError(f"patient must be an object with the keys {', '.join(PATIENT_KEYS)}, "
                         f"got {type(patient).__name__}")
    unknown = set(patient) - set(PATIENT_KEYS)
    if unknown:
        raise ValueError(f"unknown patient keys {sorted(unknown)}; known: {', '.join(PATIENT_KEYS)}")
    for key, value in patient.items():
        if not isinstance(value, str):
            raise ValueError(f"patient {key} must be a string, got {type(value).__name__}")
        # LO/PN values: at most 64 characters, and a backslash would split them into several values
        if len(value) > 64 or "\\" in value or not value.isprintable():
            raise ValueError(f"patient {key} must be at most 64 printable characters without '\\'")
    if patient.get("laterality") not in (None, "L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {patient['laterality']!r}")
    return dict(patient)


def pseudonymous_patient_id(capture_id: str) -> str:
    """The PatientID of a capture that came without one: unique to the capture, never shared.

    One per capture, not one per camera and day: a camera and day id would merge every unidentified
    person that camera saw that day into one patient (the shared 'ANONYMOUS' bug, smaller). A person
    split over several pseudonyms can be merged in the PACS later; people wrongly merged cannot be
    safely split. Derived from the capture id, so a re-sent capture gets the same id."""
    _check_capture_id(capture_id)
    return f"EDGERET-{capture_id[:24].upper()}"


def _decimal_string(value: float) -> str:
    """A DS value (at most 16 characters), e.g. '78.64'."""
    return f"{value:.2f}" if value < 1e12 else f"{value:.6e}"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (str, int)):
        return str(v)
    return json.dumps(v, separators=(",", ":"), sort_keys=True, default=str)


def findings_summary(findings: Mapping[str, Any]) -> str:
    """One human-readable line, e.g. 'edgeret AI (not for clinical use): task=dr-grade; grade=moderate'."""
    parts = "; ".join(f"{k}={_value(v)}" for k, v in findings.items())
    line = " ".join(f"edgeret AI (not for clinical use): {parts}".split())  # no newlines in one line
    return line if len(line) <= MAX_COMMENTS else line[: MAX_COMMENTS - 3] + "..."


def capture_to_dicom(
    image: np.ndarray,
    *,
    capture_id: str,
    modality: str,
    bit_depth: int,
    findings: Mapping[str, Any] | None = None,
    patient: Mapping[str, str] | None = None,
    acquired: datetime | None = None,
    coded_scale: int = 1,
    station: str | None = None,
    stream_bytes: int | None = None,
    lossy_method: str = LOSSY_METHOD,
) -> bytes:
    """DICOM Part-10 bytes (explicit VR little endian, uncompressed Secondary Capture) for one capture.

    ``coded_scale`` 2: the stream coded the image at half resolution (the derivation says so);
    ``station``: the authenticated camera's name (StationName, at most 16 characters);
    ``stream_bytes``: the size of the ``.ert`` stream the image was decoded from, for
    LossyImageCompressionRatio (the image's uncompressed size over it);
    ``lossy_method``: LossyImageCompressionMethod, :data:`JPEG_XL_METHOD` for a JPEG XL stream."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be 'oct' or 'fundus', got {modality!r}")
    spp, photometric, bits_allocated = _pixel_layout(image, bit_depth)
    _check_capture_id(capture_id)
    patient = check_patient(patient or {})
    pydicom = _pydicom()
    import edgeret

    study_uid, series_uid, sop_uid = capture_uids(capture_id)
    when = acquired or datetime.now(timezone.utc)  # a naive datetime is taken as UTC
    when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")

    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: patient names and findings may not be ASCII
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, sop_uid
    ds.StudyDate = ds.ContentDate = date
    ds.StudyTime = ds.ContentTime = time
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", ""  # type 2: present, may be empty
    ds.Modality = MODALITIES[modality]
    ds.ConversionType = "WSD"  # workstation: the hub made this image, no modality did
    ds.Manufacturer, ds.SoftwareVersions = "edgeret", str(getattr(edgeret, "__version__", "unknown"))
    if station:
        if len(station) > 16:
            raise ValueError(f"station name {station!r} is longer than DICOM's 16 characters")
        ds.StationName = station
    ds.StudyDescription = patient.get("study_description", "")
    ds.SeriesDescription = f"edgeret hub: {modality}"
    ds.PatientName = patient.get("patient_name", "Anonymous")
    ds.PatientID = patient.get("patient_id") or pseudonymous_patient_id(capture_id)
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.PatientOrientation = ""
    if "laterality" in patient:
        ds.ImageLaterality = patient["laterality"]
    else:  # General Series, type 2C: an eye is a paired structure and no ImageLaterality says which
        ds.Laterality = ""
    if findings:
        ds.ImageComments = findings_summary(findings)
    ds.BurnedInAnnotation = "NO"
    ds.DerivationDescription = DERIVATIONS.get(lossy_method, DERIVATION) + (
        "; coded at half resolution, up-sampled by the hub" if coded_scale == 2 else "")
    ds.LossyImageCompression = "01"  # the learned codec discarded information
    if stream_bytes:
        if not isinstance(stream_bytes, int) or stream_bytes < 1:
            raise ValueError(f"stream_bytes must be a positive integer, got {stream_bytes!r}")
        uncompressed = image.shape[0] * image.shape[1] * spp * int(bit_depth) / 8
        ds.LossyImageCompressionRatio = _decimal_string(uncompressed / stream_bytes)
        ds.LossyImageCompressionMethod = lossy_method

    rows, cols = image.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = spp, photometric
    if spp == 3:
        ds.PlanarConfiguration = 0  # RGBRGB..., numpy's (H, W, 3) order
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, int(bit_depth), int(bit_depth) - 1
    ds.PixelRepresentation = 0
    pixels = np.ascontiguousarray(image, dtype="<u2" if bits_allocated == 16 else np.uint8).tobytes()
    if len(pixels) % 2:
        pixels += b"\0"  # DICOM values have even length
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW" if bits_allocated == 16 else "OB"
    return _write(pydicom, ds)


def _write(pydicom: Any, ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    else:  # pydicom 2.x reads the encoding from the dataset
        ds.is_little_endian, ds.is_implicit_VR = True, False
        pydicom.dcmwrite(buf, ds, write_like_original=False)
    return buf.getvalue()


def read_capture_dicom(data: bytes) -> tuple[np.ndarray, pydicom.Dataset]:
    """Pixels (same dtype and shape as given to capture_to_dicom) and the dataset, for tests and tools."""
    pydicom = _pydicom()
    with warnings.catch_warnings():  # pydicom warns about oddities of foreign files
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
        pixels = np.asarray(ds.pixel_array)
    dtype = np.uint16 if int(ds.BitsAllocated) == 16 else np.uint8
    return np.ascontiguousarray(pixels.astype(dtype, copy=False)), ds
