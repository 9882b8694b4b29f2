"""Fine-tuning helpers: a trained lowest rate point replaces the extrapolated one (build host, torch)."""

from __future__ import annotations

import math

import pytest
import torch

from edgeret_plugins.tasks.codec import WEIGHTS_DIR
from edgeret_plugins.tasks.codec.finetune import with_trained_lowest, without_extrapolated
from edgeret_plugins.tasks.codec.recipe import loss_fn_for
from edgeret_plugins.tasks.codec.shipping import load_codec, points_to_extrapolate
from edgeret_plugins.tasks.codec.specs import SPECS

pytestmark = pytest.mark.skipif(not (WEIGHTS_DIR / "codec_models.json").exists(),
                                reason="codec weights are not exported")


@pytest.fixture(scope="module")
def shipped():
    return load_codec("oct-factorized")


def test_trained_lowest_point_starts_at_the_extrapolated_gains(shipped):
    trained = without_extrapolated(shipped)
    lowest = trained.cfg.lambdas[0]
    new = with_trained_lowest(shipped, lowest / 4)
    assert new.cfg.lambdas == (lowest / 4, *trained.cfg.lambdas) and new.cfg.extrapolated == 0
    for gains_new, gains_old in ((new.gains, trained.gains), (new.inv_gains, trained.inv_gains)):
        for p_new, p_old in zip(gains_new, gains_old, strict=True):
            torch.testing.assert_close(p_new[1:], p_old)  # the trained points are untouched
            torch.testing.assert_close(p_new[0], p_old[0] - (p_old[1] - p_old[0]))  # one log step down


def test_the_new_point_is_trained_and_the_export_adds_none(shipped):
    spec = SPECS["oct-factorized"]
    trained = without_extrapolated(shipped)
    assert points_to_extrapolate(spec, trained.cfg) == 1  # as shipped: 5 trained + 1 extrapolated
    new = with_trained_lowest(shipped, trained.cfg.lambdas[0] / 4)
    assert points_to_extrapolate(spec, new.cfg) == 0  # same 6 points, same rate ids
    # the training loss draws rate points from the trained ones: index 0 is now among them
    torch.manual_seed(0)
    drawn = set()
    loss = loss_fn_for(new.cfg)
    x = torch.randint(0, 256, (1, 1, 192, 192), dtype=torch.uint8)
    original_forward = new.forward

    def spy(x, r):
        drawn.add(r)
        return original_forward(x, r)

    new.forward = spy
    with torch.no_grad():
        for _ in range(40):
            loss(new, [x])
    assert 0 in drawn and drawn <= set(range(new.cfg.n_rates))


def test_a_lowest_point_must_be_lower(shipped):
    with pytest.raises(ValueError, match="must be below"):
        with_trained_lowest(shipped, 1e3)


def test_widening_keeps_the_decoded_image_and_the_bitstream(shipped):
    from edgeret_plugins.tasks.codec.widen import widened

    base = without_extrapolated(shipped).eval()
    enc = tuple(w + 8 for w in base.cfg.widths[:2])
    dec = tuple(w + 16 for w in (base.cfg.dec_widths or base.cfg.widths)[:2])
    wide = widened(base, encoder=enc, decoder=dec).eval()
    assert wide.cfg.widths[:2] == enc and wide.cfg.dec_widths[:2] == dec
    assert wide.cfg.latents == base.cfg.latents  # the bitstream's shape does not change
    x = torch.rand(1, 1, 128, 192, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ys_base, ys_wide = base.encoder(x), wide.encoder(x)
        for a, b in zip(ys_base, ys_wide, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        torch.testing.assert_close(wide.decoder(*ys_base), base.decoder(*ys_base), rtol=0, atol=1e-5)
    # the new channels are live: their incoming weights are not zero, so training can use them
    old_enc, old_dec = base.encoder.l1.out_channels, base.decoder.d5.out_channels
    assert wide.encoder.l1.weight[old_enc:].abs().sum() > 0
    assert wide.decoder.d5.weight[:, old_dec:].abs().sum() > 0


def test_widening_cannot_narrow(shipped):
    from edgeret_plugins.tasks.codec.widen import widened

    with pytest.raises(ValueError, match="cannot narrow"):
        widened(without_extrapolated(shipped), encoder=(4, 4))


def test_natural_photos_leave_out_the_benchmark_retina():
    import numpy as np
    from skimage import data

    from edgeret_plugins.tasks.codec.specs import natural_photos

    retina = data.retina()
    photos = natural_photos(3)
    assert len(photos) >= 6 and all(p.dtype == np.uint8 and p.shape[2] == 3 for p in photos)
    assert not any(p.shape == retina.shape and np.array_equal(p, retina) for p in photos)
    assert all(p.ndim == 2 and p.dtype == np.uint8 for p in natural_photos(1))  # grey for OCT models


def test_colour_jitter_changes_each_channel_within_its_bounds():
    from edgeret_plugins.tasks.codec.recipe import augmentation

    x = torch.full((8, 3, 16, 16), 100, dtype=torch.uint8)
    (a,) = augmentation(jitter=0.3)([x], torch.Generator().manual_seed(1))
    (b,) = augmentation(jitter=0.3)([x], torch.Generator().manual_seed(1))
    assert a.dtype == torch.uint8 and torch.equal(a, b)  # seeded: reproducible training
    per_channel = a.float().mean((2, 3))
    assert per_channel.min() >= 100 * math.exp(-0.3) - 1 and per_channel.max() <= 100 * math.exp(0.3) + 1
    assert per_channel.std(1).min() > 0  # the channels move independently: a colour change, not brightness


def test_blur_softens_some_batches_and_keeps_flat_areas():
    from edgeret_plugins.tasks.codec.recipe import augmentation

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    outs = [augmentation(blur=1.5)([x], torch.Generator().manual_seed(s))[0] for s in range(8)]
    hp = [float((o.float()[..., 1:] - o.float()[..., :-1]).abs().mean()) for o in outs]
    sharp = float((x.float()[..., 1:] - x.float()[..., :-1]).abs().mean())
    assert min(hp) < 0.7 * sharp and max(hp) == pytest.approx(sharp)  # about half the batches softened
    flat = torch.full((1, 1, 24, 24), 77, dtype=torch.uint8)
    for s in range(4):  # reflected edges: a flat patch stays exactly flat
        assert torch.equal(augmentation(blur=2.0)([flat], torch.Generator().manual_seed(s))[0], flat)


def test_lowpass_term_sees_slow_colour_drift_that_ms_ssim_barely_does():
    from edgeret_plugins.tasks.codec.losses import lowpass_l1, ms_ssim

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(192.0), torch.arange(192.0), indexing="ij")
    x = (0.5 + 0.2 * torch.sin(xx / 30) * torch.cos(yy / 40)).expand(1, 3, 192, 192).clone()
    drift = x.clone()
    drift[:, 2] += 3 / 255 * torch.sin(xx / 20)  # a slow 3-grey-level wave in blue
    noise = x.clone()
    noise[:, 2] += 3 / 255 * torch.randn((1, 192, 192), generator=g)  # fine noise of the same amplitude
    assert lowpass_l1(x, x) == 0
    assert lowpass_l1(x, drift) > 5 * lowpass_l1(x, noise)
    # what MS-SSIM charges each: the drift costs less than the noise
    assert 1 - ms_ssim(drift, x) < 1 - ms_ssim(noise, x)


def test_the_lowpass_weight_enters_the_training_loss(shipped):
    model = without_extrapolated(shipped).eval()
    x = torch.randint(0, 256, (1, 1, 192, 192), dtype=torch.uint8)
    losses = []
    for weight in (0.0, 5.0):
        torch.manual_seed(3)  # the same rate point for both
        with torch.no_grad():
            losses.append(float(loss_fn_for(model.cfg, weight)(model, [x])))
    assert losses[1] > losses[0]
