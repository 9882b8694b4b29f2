"""The codec through `edgeret export`: the INT8 encoder of each backend writes streams the hub decodes.

One module-scoped fixture exports codec-encoder (and once codec-decoder) per device with small
held-out and calibration sets. Each exported encoder then runs on fresh OCT phantoms on its own
backend (ONNX Runtime int8 QDQ, OpenVINO int8 via NNCF, LiteRT int8 via litert-torch); its latents
are quantized and entropy-coded into a real .ert stream, which the hub (the plugin's fp32 decoder on
ONNX Runtime) must decode to exactly the symbols written, within 0.2 dB PSNR of the fp32 encoder's.
"""

from __future__ import annotations

import numpy as np
import pytest
from inprocess_cli import cli

from edgeret.build.data.oct import generate_oct
from edgeret.bundle.manifest import load_manifest
from edgeret.codec.ert.container import encode_stream
from edgeret.codec.session import LATENT_NAMES, encode_latents
from edgeret.metrics import psnr
from edgeret.plugin.host import Host
from edgeret_plugins.tasks.codec.export_checks import _hub, fit_to_input

SMALL = ["--heldout", "4", "--calib-size", "16", "--golden", "2", "--threads", "1", "--quiet"]
DEVICES = {"x86-cpu": ["--precision", "int8"], "intel-x86": [], "raspberry-pi-5": []}
FRESH = 300_000_000  # no training, calibration, held-out or benchmark seed


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec-bundles")
    made = {}
    for device, extra in DEVICES.items():
        tasks = ["codec-encoder", "codec-decoder"] if device == "x86-cpu" else ["codec-encoder"]
        code, _, err = cli("export", "--device", device, "--tasks", *tasks, *SMALL, *extra,
                           "-o", str(root / device))
        assert code == 0, err[-2000:]
        made[device] = root / device
    return made


def _scans(n: int = 2) -> list[np.ndarray]:
    return [fit_to_input(generate_oct(FRESH + i, quality="good").image, (512, 512)) for i in range(n)]


@pytest.mark.parametrize("device", list(DEVICES))
def test_exported_encoder_streams_decode_exactly_at_the_hub(bundles, device):
    entry = load_manifest(bundles[device]).raw["tasks"]["codec-encoder"]
    assert entry["precision"] == "int8", entry["precision"]
    gate = entry["gate"]
    assert gate["metric"] == "round_trip_psnr" and gate["passed"] and gate["drop"] <= 0.2

    backend = Host().backend(entry["target_backend"])
    runner = backend.load(bundles[device] / entry["artifact"], threads=1)
    session, model, rate = _hub()
    for image in _scans():
        x = image.astype(np.float32)[None, None] / np.float32(255)
        exported = runner.run({"image": x})
        encoded = encode_latents([np.asarray(exported[n], np.float32) for n in LATENT_NAMES],
                                 image.shape, 8, model, rate)
        decoded = session.decode_bytes(encode_stream(encoded.header, encoded.payloads))
        for wrote, read in zip(encoded.symbols, decoded.symbols, strict=True):
            assert np.array_equal(wrote, read)
        reference = session.encode(image, model, rate)  # the plugin's fp32 encoder
        ref_image = session.decode_bytes(encode_stream(reference.header, reference.payloads)).image
        gap = psnr(image, ref_image, 255.0) - psnr(image, decoded.image, 255.0)
        assert gap <= 0.2, f"{device}: int8 encoder loses {gap:.3f} dB against fp32"
        # most symbols are identical; rounding ties and int8 noise move a few by one step
        same = np.mean(np.concatenate([(a == b).ravel() for a, b in
                                       zip(encoded.symbols, reference.symbols, strict=True)]))
        assert same > 0.9, f"{device}: only {same:.1%} of symbols agree with the fp32 encoder"


def test_the_finest_latents_layer_stays_float_where_the_exporter_can(bundles):
    """The codec task keeps encoder.l3 (it writes y3) float in int8: by node name on ONNX Runtime, by
    ignored scope on OpenVINO (its weights are the one conv left fp16 in the IR); LiteRT says it cannot."""
    from edgeret_exporters.openvino_ir import openvino_op_types

    ort = load_manifest(bundles["x86-cpu"]).raw["tasks"]["codec-encoder"]
    assert "/encoder/l3/Conv" in ort["exporter_options"]["nodes_to_exclude"]
    ov = load_manifest(bundles["intel-x86"]).raw["tasks"]["codec-encoder"]
    assert ov["exporter_options"]["ignored_scope"] == {"patterns": ["/encoder/l3/.*"]}
    ops = openvino_op_types(bundles["intel-x86"] / ov["artifact"])
    assert ops["Convolution"] == 6 and ops["Constant:i8"] == 5, ops
    pi = load_manifest(bundles["raspberry-pi-5"]).raw["tasks"]["codec-encoder"]
    assert any("encoder.l3 quantized too" in note for note in pi["gate"]["notes"]), pi["gate"]["notes"]


def test_exported_decoder_bundle_verifies_and_gates_on_the_round_trip(bundles):
    code, out, err = cli("verify", str(bundles["x86-cpu"]))
    assert code == 0, err
    assert "codec-decoder" in out and "codec-encoder" in out
    gate = load_manifest(bundles["x86-cpu"]).raw["tasks"]["codec-decoder"]["gate"]
    assert gate["metric"] == "round_trip_psnr" and gate["passed"]
    assert gate["fp32"] > 20.0  # a real reconstruction, not noise


def test_declared_latent_channels_match_the_shipped_default_model():
    from edgeret_plugins.tasks.codec import DEFAULT_LATENT_CHANNELS, DEFAULT_MODEL, catalog

    assert tuple(catalog().models[DEFAULT_MODEL].latent_channels) == DEFAULT_LATENT_CHANNELS


def test_profile_size_fixes_symbolic_latent_dims():
    from edgeret.build.export.task_models import task_with_input_size

    decoder = task_with_input_size(Host().task("codec-decoder"), (512, 256))
    assert [s.shape for s in decoder.inputs] == [("batch", c, 512 // s, 256 // s)
                                                 for c, s in zip((32, 16, 8, 4), (32, 16, 8, 4), strict=True)]
    assert decoder.outputs[0].shape == ("batch", 1, 512, 256)


@pytest.mark.parametrize("device", list(DEVICES))
def test_camera_encodes_with_the_bundle_and_the_hub_decodes(bundles, device, tmp_path):
    from edgeret.images.read_write import read_image, write_image

    scan = _scans(1)[0]
    write_image(tmp_path / "scan.png", scan)
    code, out, err = cli("encode", str(tmp_path / "scan.png"), "-o", str(tmp_path / "scan.ert"),
                         "--bundle", str(bundles[device]), "--json")
    assert code == 0, err
    assert "int8 bundle" in out
    code, _, err = cli("decode", str(tmp_path / "scan.ert"), "-o", str(tmp_path / "back.png"))
    assert code == 0, err
    back = read_image(tmp_path / "back.png")
    session, model, rate = _hub()
    reference = session.decode_bytes(encode_stream(*_parts(session.encode(scan, model, rate)))).image
    assert psnr(scan, reference, 255.0) - psnr(scan, back, 255.0) <= 0.2


def _parts(encoded):
    return encoded.header, encoded.payloads


def test_bundle_encoder_refuses_other_sizes_and_tampered_bundles(bundles, tmp_path):
    import shutil

    from edgeret.images.read_write import write_image

    write_image(tmp_path / "big.png", generate_oct(FRESH + 7, quality="good").image)
    code, _, err = cli("encode", str(tmp_path / "big.png"), "-o", str(tmp_path / "big.ert"),
                       "--bundle", str(bundles["x86-cpu"]))
    assert code == 2 and "runs 512x512 images only" in err and not (tmp_path / "big.ert").exists()
    copy = tmp_path / "bundle"
    shutil.copytree(bundles["x86-cpu"], copy)
    artifact = copy / load_manifest(copy).raw["tasks"]["codec-encoder"]["artifact"]
    artifact.write_bytes(artifact.read_bytes()[:-8] + b"\0" * 8)
    write_image(tmp_path / "scan.png", _scans(1)[0])
    code, _, err = cli("encode", str(tmp_path / "scan.png"), "-o", str(tmp_path / "x.ert"),
                       "--bundle", str(copy))
    assert code == 2 and "sha256 does not match" in err and not (tmp_path / "x.ert").exists()


def test_a_bundle_encoder_codes_an_image_twice_its_size_at_half_scale(bundles, tmp_path):
    """The profile's graph is 512x512; a 1024x1024 capture can still go, halved (forced: OCT never
    halves on its own)."""
    from edgeret.images.read_write import read_image, write_image

    big = fit_to_input(generate_oct(FRESH + 9, quality="good").image, (1024, 1024))
    write_image(tmp_path / "big.png", big)
    code, out, err = cli("encode", str(tmp_path / "big.png"), "-o", str(tmp_path / "big.ert"),
                         "--bundle", str(bundles["x86-cpu"]), "--scale", "2")
    assert code == 0, err
    assert "coded at 1/2 resolution" in out
    assert cli("decode", str(tmp_path / "big.ert"), "-o", str(tmp_path / "back.png"))[0] == 0
    assert read_image(tmp_path / "back.png").shape == (1024, 1024)
    write_image(tmp_path / "odd.png", big[:, :1000])
    code, _, err = cli("encode", str(tmp_path / "odd.png"), "-o", str(tmp_path / "odd.ert"),
                       "--bundle", str(bundles["x86-cpu"]), "--scale", "2")
    assert code == 2 and "(halved: 500x512)" in err and not (tmp_path / "odd.ert").exists()
