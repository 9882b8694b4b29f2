"""Hub DICOM output and PACS forwarding, against a real Orthanc with its DICOMweb plugin."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from edgeret.hub.dicom_out import SECONDARY_CAPTURE, capture_to_dicom, capture_uids, read_capture_dicom
from edgeret.hub.pacs import PacsError, StowClient

RNG = np.random.default_rng(7)
FINDINGS = {"task": "dr-grade", "grade": "moderate", "referable": True, "quality": "good", "p": 0.87654}


def new_id() -> str:
    return uuid.uuid4().hex


def gray16(h: int = 64, w: int = 48) -> np.ndarray:
    img = RNG.integers(0, 65536, (h, w), dtype=np.uint16)
    img[0, 0], img[0, 1] = 65535, 256  # values above 255 must survive
    return img


# --- DICOM output ------------------------------------------------------------------------

def test_gray8_round_trip_and_tags() -> None:
    img = RNG.integers(0, 256, (37, 53), dtype=np.uint8)  # odd pixel count: pixel data gets padded
    capture_id = new_id()
    data = capture_to_dicom(img, capture_id=capture_id, modality="oct", bit_depth=8)
    assert data[128:132] == b"DICM"
    pixels, ds = read_capture_dicom(data)
    assert pixels.dtype == np.uint8 and pixels.shape == img.shape
    assert np.array_equal(pixels, img)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # explicit VR little endian
    assert ds.SOPClassUID == SECONDARY_CAPTURE == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == "OPT" and ds.SeriesDescription == "edgeret hub: oct"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (8, 8, 7)
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
    # no patient fields: a pseudonymous id of this capture's own, never one shared 'ANONYMOUS' (issue 24)
    assert ds.PatientID == f"EDGERET-{capture_id[:24].upper()}" and str(ds.PatientName) == "Anonymous"
    assert "ImageComments" not in ds and "ImageLaterality" not in ds


@pytest.mark.parametrize("bit_depth", [16, 12])
def test_gray16_round_trip_keeps_values_above_255(bit_depth: int) -> None:
    img = gray16() >> (16 - bit_depth)
    img[0, 0] = (1 << bit_depth) - 1
    pixels, ds = read_capture_dicom(capture_to_dicom(img, capture_id=new_id(), modality="oct",
                                                     bit_depth=bit_depth))
    assert pixels.dtype == np.uint16 and np.array_equal(pixels, img)
    assert int(pixels.max()) == (1 << bit_depth) - 1
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, bit_depth, bit_depth - 1)
    assert ds["PixelData"].VR == "OW"


def test_rgb_round_trip_and_tags() -> None:
    img = RNG.integers(0, 256, (31, 45, 3), dtype=np.uint8)
    pixels, ds = read_capture_dicom(capture_to_dicom(img, capture_id=new_id(), modality="fundus",
                                                     bit_depth=8))
    assert pixels.shape == (31, 45, 3) and np.array_equal(pixels, img)
    assert ds.Modality == "OP" and ds.PhotometricInterpretation == "RGB"
    assert ds.SamplesPerPixel == 3 and ds.PlanarConfiguration == 0 and ds.BitsStored == 8
    assert "half resolution" not in ds.DerivationDescription


def test_a_half_scale_capture_says_so_in_its_derivation() -> None:
    img = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    _, ds = read_capture_dicom(capture_to_dicom(img, capture_id=new_id(), modality="fundus", bit_depth=8,
                                                coded_scale=2))
    assert ds.DerivationDescription.endswith("coded at half resolution, up-sampled by the hub")
    assert len(ds.DerivationDescription) <= 1024  # the ST value limit


def test_lossy_compression_ratio_and_method_come_from_the_stream() -> None:
    img = RNG.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    _, ds = read_capture_dicom(capture_to_dicom(img, capture_id=new_id(), modality="fundus", bit_depth=8,
                                                stream_bytes=1000))
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "EDGERET_LEARNED"
    assert float(ds.LossyImageCompressionRatio) == pytest.approx(64 * 48 * 3 / 1000, abs=0.01)
    _, ds = read_capture_dicom(capture_to_dicom(img, capture_id=new_id(), modality="fundus", bit_depth=8))
    assert "LossyImageCompressionRatio" not in ds  # not known: not made up


@pytest.mark.parametrize(("modality", "patient"), [("fundus", {}), ("oct", {"laterality": "L"}),
                                                   ("fundus", {"patient_id": "P1", "patient_name": "Doe^Jane",
                                                               "laterality": "R"})])
def test_dciodvfy_finds_no_error_in_the_hubs_objects(tmp_path, modality: str, patient: dict) -> None:
    """dicom3tools' IOD checker (Debian 'dicom3tools'); the old objects lacked the type 2C Laterality."""
    import shutil

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    img = RNG.integers(0, 256, (40, 30, 3) if modality == "fundus" else (40, 30), dtype=np.uint8)
    path = tmp_path / "capture.dcm"
    path.write_bytes(capture_to_dicom(img, capture_id=new_id(), modality=modality, bit_depth=8,
                                      findings={"task": "dr-grade", "grade": "none"}, patient=patient,
                                      stream_bytes=500, station="cam-1"))
    out = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True, timeout=60)
    report = out.stdout + out.stderr
    assert "SCImage" in report and "Error" not in report, report


def test_findings_patient_and_provenance_tags() -> None:
    acquired = datetime(2024, 3, 5, 14, 7, 9, tzinfo=timezone.utc)
    patient = {"patient_id": "P-0042", "patient_name": "Doe^Jane", "laterality": "R",
               "study_description": "DR screening"}
    data = capture_to_dicom(np.zeros((8, 8, 3), np.uint8), capture_id="00ff", modality="fundus",
                            bit_depth=8, findings=FINDINGS, patient=patient, acquired=acquired)
    _, ds = read_capture_dicom(data)
    assert (ds.PatientID, str(ds.PatientName)) == ("P-0042", "Doe^Jane")
    assert ds.ImageLaterality == "R" and ds.StudyDescription == "DR screening"
    assert (ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime) == ("20240305", "140709",
                                                                            "20240305", "140709")
    comments = str(ds.ImageComments)
    assert "\n" not in comments and len(comments) <= 10240
    for part in ("task=dr-grade", "grade=moderate", "referable=yes", "quality=good", "p=0.8765"):
        assert part in comments
    assert ds.Manufacturer == "edgeret" and ds.SoftwareVersions
    assert (ds.ConversionType, ds.BurnedInAnnotation, ds.LossyImageCompression) == ("WSD", "NO", "01")
    assert "learned-codec" in ds.DerivationDescription and "lossy" in ds.DerivationDescription


def test_long_findings_are_cut_to_the_lt_limit() -> None:
    data = capture_to_dicom(np.zeros((4, 4), np.uint8), capture_id="1", modality="oct", bit_depth=8,
                            findings={"notes": "x" * 20000})
    assert len(str(read_capture_dicom(data)[1].ImageComments)) <= 10240


def test_uids_are_deterministic_per_capture() -> None:
    img = np.zeros((4, 4), np.uint8)
    cid = new_id()
    a = read_capture_dicom(capture_to_dicom(img, capture_id=cid, modality="oct", bit_depth=8))[1]
    b = read_capture_dicom(capture_to_dicom(img, capture_id=cid, modality="oct", bit_depth=8))[1]
    c = read_capture_dicom(capture_to_dicom(img, capture_id=new_id(), modality="oct", bit_depth=8))[1]
    uids = lambda ds: (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)  # noqa: E731
    assert uids(a) == uids(b) == capture_uids(cid)
    assert len(set(uids(a))) == 3  # distinct per level
    assert not set(uids(a)) & set(uids(c))
    assert all(len(u) <= 64 for u in uids(a))


@pytest.mark.parametrize("image, bit_depth, fragment", [
    (np.zeros((8, 8), np.float32), 8, "dtype"),
    (np.zeros((8, 8, 4), np.uint8), 8, "shape"),
    (np.zeros((8, 8), np.uint16), 8, "bit_depth"),
    (np.full((8, 8), 4096, np.uint16), 12, "bit_depth 12"),
    (np.zeros((8, 8, 3), np.uint16), 16, "shape"),
    (np.zeros((0, 8), np.uint8), 8, "empty"),
])
def test_unsupported_images_raise_one_line_value_error(image: np.ndarray, bit_depth: int,
                                                       fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as err:
        capture_to_dicom(image, capture_id="ab", modality="oct", bit_depth=bit_depth)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"modality": "xray"}, "modality"),
    ({"capture_id": "not-hex"}, "hex"),
    ({"patient": {"laterality": "B"}}, "laterality"),
    ({"patient": {"patient_id": 42}}, "string"),
    ({"patient": {"patient_id": "x" * 65}}, "64"),
    ({"patient": {"patient_name": "Doe\\Jane"}}, "64"),
    ({"patient": {"birth_date": "19700101"}}, "unknown patient keys"),
    ({"bit_depth": 8.0}, "integer"),
])
def test_bad_arguments_raise_value_error(kwargs: dict, fragment: str) -> None:
    args = {"capture_id": "ab", "modality": "oct", "bit_depth": 8, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        capture_to_dicom(np.zeros((4, 4), np.uint8), **args)


def test_hub_modules_import_without_pydicom() -> None:
    code = ("import sys; sys.modules['pydicom'] = None\n"
            "import edgeret.hub.dicom_out, edgeret.hub.pacs\n"
            "from edgeret.errors import EdgeretError\n"
            "try:\n"
            "    edgeret.hub.dicom_out.read_capture_dicom(b'')\n"
            "except EdgeretError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'edgeret[dicom]'" in out.stdout


# --- STOW-RS to a real Orthanc -----------------------------------------------------------

def orthanc_file(orthanc, sop_uid: str) -> bytes:
    """The stored instance, fetched through Orthanc's own REST API (not DICOMweb)."""
    req = urllib.request.Request(f"{orthanc.url}/tools/lookup", data=sop_uid.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        hits = [h for h in json.load(r) if h["Type"] == "Instance"]
    assert len(hits) == 1, hits
    with urllib.request.urlopen(f"{orthanc.url}/instances/{hits[0]['ID']}/file", timeout=10) as r:
        return r.read()


def test_stow_stores_an_instance_orthanc_gives_back_unchanged(orthanc) -> None:
    img, cid = gray16(), new_id()
    sop_uid = capture_uids(cid)[2]
    client = StowClient(orthanc.dicomweb)
    assert client.instance_exists(sop_uid) is False
    data = capture_to_dicom(img, capture_id=cid, modality="oct", bit_depth=16, findings=FINDINGS)
    assert client.store(data) == sop_uid
    assert client.instance_exists(sop_uid) is True
    pixels, ds = read_capture_dicom(orthanc_file(orthanc, sop_uid))
    assert ds.SOPInstanceUID == sop_uid and ds.Modality == "OPT"
    assert pixels.dtype == np.uint16 and np.array_equal(pixels, img)


def test_stow_rgb_round_trip_through_orthanc(orthanc) -> None:
    img, cid = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8), new_id()
    client = StowClient(orthanc.dicomweb + "/")  # a trailing slash is tolerated
    patient = {"patient_name": "Müller^Jürgen", "patient_id": "ÄÖ-1", "laterality": "L"}
    sop_uid = client.store(capture_to_dicom(img, capture_id=cid, modality="fundus", bit_depth=8,
                                            patient=patient))
    pixels, ds = read_capture_dicom(orthanc_file(orthanc, sop_uid))
    assert np.array_equal(pixels, img)
    assert (str(ds.PatientName), ds.PatientID, ds.ImageLaterality) == ("Müller^Jürgen", "ÄÖ-1", "L")


def test_storing_the_same_capture_twice_is_idempotent(orthanc) -> None:
    cid = new_id()
    data = capture_to_dicom(np.full((16, 16), 9, np.uint8), capture_id=cid, modality="oct", bit_depth=8)
    client = StowClient(orthanc.dicomweb, user="hub", password="secret")  # Basic auth header is harmless
    assert client.store(data) == client.store(data) == capture_uids(cid)[2]
    orthanc_file(orthanc, capture_uids(cid)[2])  # asserts exactly one stored instance


def test_non_dicom_body_is_a_permanent_error(orthanc) -> None:
    with pytest.raises(PacsError) as err:
        StowClient(orthanc.dicomweb).store(b"this is not a DICOM file" * 8)
    assert err.value.transient is False
    message = str(err.value)
    assert orthanc.dicomweb in message and "400" in message and "no instance stored" in message
    assert "\n" not in message


def test_wrong_path_is_a_permanent_error(orthanc) -> None:
    client = StowClient(orthanc.url + "/no-such-dicomweb")
    data = capture_to_dicom(np.zeros((4, 4), np.uint8), capture_id=new_id(), modality="oct", bit_depth=8)
    with pytest.raises(PacsError) as err:
        client.store(data)
    assert err.value.transient is False and "404" in str(err.value)
    with pytest.raises(PacsError) as err:
        client.instance_exists("1.2.3")
    assert err.value.transient is False


def test_pacs_down_is_transient_and_the_same_store_succeeds_after_restart(orthanc) -> None:
    cid = new_id()
    data = capture_to_dicom(gray16(32, 32), capture_id=cid, modality="oct", bit_depth=16)
    client = StowClient(orthanc.dicomweb, timeout=5)
    orthanc.stop()
    try:
        with pytest.raises(PacsError) as err:
            client.store(data)
        assert err.value.transient is True
        assert orthanc.dicomweb in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(PacsError) as err:
            client.instance_exists(capture_uids(cid)[2])
        assert err.value.transient is True
    finally:
        orthanc.start()
    assert client.store(data) == capture_uids(cid)[2]
    assert client.instance_exists(capture_uids(cid)[2])


# --- answers Orthanc cannot be made to give: a tiny real HTTP server ---------------------

class _Canned(BaseHTTPRequestHandler):
    answers: list[tuple[int, bytes]] = []
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(dict(self.headers))
        status, body = type(self).answers.pop(0)
        if status == 0:  # never answer: the client must time out
            threading.Event().wait(3)
            return
        if status < 0:  # hang up without a word, like a PACS that crashes mid-request
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[tuple[str, type[_Canned]]]:
    handler = type("Handler", (_Canned,), {"answers": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", handler
    server.shutdown()
    server.server_close()


def _sop(uid: str, reason: int | None = None) -> dict:
    item = {"00081155": {"vr": "UI", "Value": [uid]}}
    if reason is not None:
        item["00081197"] = {"vr": "US", "Value": [reason]}
    return item


@pytest.mark.parametrize("status, body, transient", [
    (503, b"", True),
    (429, b"", True),
    (500, b'{"Message": "database locked"}', True),
    (401, b"", False),
    (403, b"", False),
    (415, b"", False),
    (202, json.dumps({"00081198": {"vr": "SQ", "Value": [_sop("1.2.3", 0xC000)]}}).encode(), False),
    (409, json.dumps({"00081198": {"vr": "SQ", "Value": [_sop("1.2.3", 0xA700)]}}).encode(), True),
    (200, b"<NativeDicomModel/>", False),
    (200, b"{}", False),
])
def test_http_answers_are_classified(canned, status: int, body: bytes, transient: bool) -> None:
    url, handler = canned
    handler.answers.append((status, body))
    with pytest.raises(PacsError) as err:
        StowClient(url).store(b"DICM")
    assert err.value.transient is transient and url in str(err.value)


def test_accepted_answers_basic_auth_and_duplicate(canned) -> None:
    url, handler = canned
    ok = {"00081199": {"vr": "SQ", "Value": [_sop("1.2.3")]}, "00081198": {"vr": "SQ"}}
    dup = {"00081198": {"vr": "SQ", "Value": [_sop("1.2.4", 0x0111)]}}
    handler.answers += [(202, json.dumps(ok).encode()), (409, json.dumps(dup).encode())]
    client = StowClient(url, user="hub", password="pä55")
    assert client.store(b"DICM") == "1.2.3"
    assert client.store(b"DICM") == "1.2.4"  # "duplicate SOP instance" means it is already there
    headers = handler.seen[0]
    assert headers["Authorization"] == "Basic " + base64.b64encode("hub:pä55".encode()).decode()
    assert headers["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')


@pytest.mark.parametrize("status, fragment", [(0, "no answer within 0.5 s"), (-1, "connection failed")])
def test_no_answer_is_transient(canned, status: int, fragment: str) -> None:
    url, handler = canned
    handler.answers.append((status, b""))
    with pytest.raises(PacsError, match=fragment) as err:
        StowClient(url, timeout=0.5).store(b"DICM")
    assert err.value.transient is True and url in str(err.value)
