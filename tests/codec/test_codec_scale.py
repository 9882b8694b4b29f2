"""Half-resolution coding of oversampled images: the resamplers, the rule, and real streams end to end."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from edgeret.cli import main as edgeret
from edgeret.codec.ert.container import Header, encode_stream
from edgeret.codec.scale import OVERSAMPLED_DB, coded_scale, downscale2, resample_psnr, upscale2
from edgeret.codec.session import CodecCatalog, CodecSession
from edgeret.errors import InputError
from edgeret.images.read_write import read_image, write_image
from edgeret.plugin.host import get_host
from edgeret_plugins.tasks.codec.processing import ms_ssim


@pytest.fixture(scope="module")
def session():
    host = get_host()
    return CodecSession(CodecCatalog.of_plugin(host), host.backend("onnxruntime"), threads=1)


@pytest.fixture(scope="module")
def retina():
    """The centre of scikit-image's real fundus photograph: 704x704, oversampled like the whole."""
    return np.ascontiguousarray(skdata.retina()[352:1056, 352:1056])


def test_resamplers_keep_constants_and_ramps_and_any_size():
    flat = np.full((37, 50, 3), 77, np.uint8)
    assert downscale2(flat).shape == (19, 25, 3)
    assert np.array_equal(upscale2(downscale2(flat), 37, 50), flat)
    ramp = (np.arange(40)[:, None] * 300 + np.arange(48)[None, :] * 20).astype(np.uint16)
    back = upscale2(downscale2(ramp), 40, 48)
    assert back.dtype == np.uint16
    assert np.array_equal(back[4:-4, 4:-4], ramp[4:-4, 4:-4])  # cubic reproduces a plane inside
    assert downscale2(np.array([[0, 1], [1, 1]], np.uint8))[0, 0] == 1  # 3/4 rounds half up


def test_oversampled_means_halving_costs_almost_nothing(retina):
    assert resample_psnr(retina) > OVERSAMPLED_DB
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert resample_psnr(noise) < 20
    assert coded_scale(retina, True) == 2
    assert coded_scale(retina, False) == 1  # the rate point does not allow it
    assert coded_scale(noise, True) == 1
    assert coded_scale(noise, False, "2") == 2 and coded_scale(retina, True, 1) == 1
    with pytest.raises(ValueError, match="auto, 1 or 2"):
        coded_scale(retina, True, "3")


def test_oversampled_photo_at_a_low_rate_is_coded_at_half_scale_and_beats_full_scale(session, retina):
    catalog = session.catalog
    model, q4 = catalog.choose("fundus", "factorized", "q4")
    _, q1 = catalog.choose("fundus", "factorized", "q1")
    half = session.encode(retina, model, q4)
    assert half.header.scale == 2 and half.header.height == 704
    assert [lat.shape[1:] for lat in half.header.latents][0] == (11, 11)  # 352 px coded, /32
    data = encode_stream(half.header, half.payloads)
    decoded = session.decode_bytes(data)
    assert decoded.image.shape == retina.shape
    assert all(np.array_equal(a, b) for a, b in zip(decoded.symbols, half.symbols, strict=True))
    full = session.encode(retina, model, q1, scale=1)
    full_data = encode_stream(full.header, full.payloads)
    full_image = session.decode_bytes(full_data).image
    # at about the same size, the half-scale stream of a higher rate point is the better picture
    assert len(data) < 1.3 * len(full_data)
    assert ms_ssim(retina, decoded.image, 255.0) > ms_ssim(retina, full_image, 255.0) + 0.005


def test_high_rates_and_detailed_images_stay_full_scale(session, retina):
    catalog = session.catalog
    model, q6 = catalog.choose("fundus", "factorized", "q6")
    assert session.encode(retina, model, q6).header.scale == 1  # above half_scale_through
    from edgeret_plugins.tasks.codec.specs import phantom

    oct_image = phantom("oct", 100_000)[0]  # speckle to the last pixel: not oversampled
    oct_model, oct_q0 = catalog.choose("oct", "factorized", "q0")
    assert oct_model.allows_half_scale(oct_q0) and resample_psnr(oct_image) < OVERSAMPLED_DB
    assert session.encode(oct_image, oct_model, oct_q0).header.scale == 1


def test_header_scale_that_does_not_fit_the_latents_is_refused(session, retina):
    model, q4 = session.catalog.choose("fundus", "factorized", "q4")
    full = session.encode(retina, model, q4, scale=1)
    h = full.header
    lying = Header(codec=h.codec, model_name=h.model_name, model_hash=h.model_hash, height=h.height,
                   width=h.width, channels=h.channels, bit_depth=h.bit_depth, modality=h.modality,
                   latents=h.latents, scale=2)
    with pytest.raises(InputError, match=r"lying\.ert: latent shapes .* image coded at 1/2"):
        session.decode_bytes(encode_stream(lying, full.payloads), source="lying.ert")


def test_cli_encode_scale_and_decode_to_the_original_size(tmp_path, capsys, retina):
    src = tmp_path / "photo.png"
    write_image(src, retina[:300, :410])
    assert edgeret(["encode", str(src), "-o", str(tmp_path / "a.ert"), "--scale", "2", "--rate", "q6"]) == 0
    assert "coded at 1/2 resolution" in capsys.readouterr().out
    assert edgeret(["decode", str(tmp_path / "a.ert"), "-o", str(tmp_path / "a.png")]) == 0
    assert read_image(tmp_path / "a.png").shape == (300, 410, 3)


def test_the_agent_halves_only_captures_its_quality_model_graded_good():
    from edgeret.camera.capture import scale_for_quality

    assert scale_for_quality({"task": "quality-fundus", "quality": "good"}) == "auto"
    assert scale_for_quality({"task": "quality-fundus", "quality": "usable"}) == 1
    assert scale_for_quality({"task": "quality-oct", "grade": "poor"}) == 1
    assert scale_for_quality({"task": None}) == "auto"  # no quality model on the device
