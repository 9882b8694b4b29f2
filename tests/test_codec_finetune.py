"""Fine-tuning helpers: a trained lowest rate point replaces the extrapolated one (build host, torch)."""

from __future__ import annotations

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
