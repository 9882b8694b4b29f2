"""The codec models' specifications and training data (build host only).

:data:`SPECS` holds each shipped model's architecture, data, seeds and schedule;
:func:`phantom` and :func:`patches_from` make the training crops. Seeds: training
phantoms use ``0 .. n-1``, validation ``50_000 ..``, the benchmark ``100_000 ..``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import CodecConfig

MANIFEST = "codec_models.json"
PATCH = 192  # >= 176, so the five-scale MS-SSIM is defined on a training patch
VALIDATION_SEED = 50_000
BENCH_SEED = 100_000
MAX_RANGE = 255  # factorized tables cover at most -255..255


@dataclass(frozen=True)
class Spec:
    """One shipped model: what it is, what it trains on and for how long."""

    modality: str  # "oct" or "fundus"
    config: CodecConfig
    n_images: int
    patches_per_image: int
    epochs: int
    batch: int = 4
    lr: float = 1e-3
    seed: int = 0
    description: str = ""
    # factorized: rate points added below the lowest trained one at export, each with log-gains
    # extrapolated by this many steps of the two lowest points (Cui et al. 2021's continuous
    # rate adaptation), applied in order
    extrapolate_low: tuple[float, ...] = ()
    # the rate point uploads use unless told otherwise ("q6"); None: the middle one. Set by the rule in
    # tools/bench_grading_after_codec.py: the lowest point the hub grades like the original
    default_rate: str | None = None
    # the highest rate point at which an oversampled image is coded at half resolution
    # (edgeret.codec.scale); None: never. Set from tools/tune_half_scale.py on up-sampled phantoms and
    # photographs (never the benchmark's retina): the highest point whose half-scale stream beats the
    # full-scale curve at equal bits, below the top and the default point
    half_scale_through: str | None = None


SPECS: dict[str, Spec] = {
    "oct-paper": Spec(
        "oct", CodecConfig(1, "paper", latents=(8, 2, 1, 1)), n_images=200, patches_per_image=6,
        epochs=3, description="seed paper's architecture, L = 7, OCT, channels (8, 2, 1, 1)"),
    "oct-factorized": Spec(
        "oct", CodecConfig(1, "factorized", latents=(32, 16, 8, 4), lambdas=(1.0, 4.0, 16.0, 64.0, 256.0)),
        n_images=240, patches_per_image=8, epochs=5, extrapolate_low=(1.0,), default_rate="q3",
        half_scale_through="q2",
        description="same skeleton, learned factorized prior, 5 trained rate points + 1 extrapolated, OCT"),
    "fundus-paper": Spec(
        "fundus", CodecConfig(3, "paper", latents=(16, 4, 2, 1)), n_images=200, patches_per_image=6,
        epochs=2, description="seed paper's architecture, L = 7, fundus, channels (16, 4, 2, 1)"),
    "fundus-factorized": Spec(
        "fundus", CodecConfig(3, "factorized", latents=(32, 16, 8, 4),
                              lambdas=(2.0, 8.0, 32.0, 128.0, 512.0)),
        n_images=240, patches_per_image=8, epochs=5, extrapolate_low=(1.0, 1.0), default_rate="q6",
        half_scale_through="q4",
        description="same skeleton, learned factorized prior, 5 trained rate points + 2 extrapolated, "
                    "fundus"),
}


# --- data ---------------------------------------------------------------------------------


def phantom(modality: str, seed: int, *, size: int | None = None, bit_depth: int = 8):
    """(image, mask of the interesting region) for one phantom; training takes good + usable."""
    quality = "usable" if seed % 4 == 3 else "good"
    if modality == "oct":
        from edgeret.build.data.oct import generate_oct

        s = generate_oct(seed, quality=quality, bit_depth=bit_depth)
        return s.image, s.retina_mask
    from edgeret.build.data.fundus import generate_fundus

    s = generate_fundus(seed, size=size or (1024 if seed % 3 == 2 else 512), quality=quality)
    return s.image, s.image.max(axis=2) > 10


def patches_from(images_and_masks, per_image: int, seed: int) -> np.ndarray:
    """uint8 (N, C, PATCH, PATCH): 3/4 of the crops centred on the mask, the rest anywhere."""
    rng = np.random.default_rng(seed)
    out = []
    for image, mask in images_and_masks:
        img = image if image.ndim == 3 else image[:, :, None]
        h, w = img.shape[:2]
        ys, xs = np.nonzero(mask) if mask is not None else (np.array([]), np.array([]))
        for _ in range(per_image):
            if len(ys) and rng.random() < 0.75:
                k = rng.integers(len(ys))
                top = int(np.clip(ys[k] - PATCH // 2, 0, h - PATCH))
                left = int(np.clip(xs[k] - PATCH // 2, 0, w - PATCH))
            else:
                top, left = int(rng.integers(0, h - PATCH + 1)), int(rng.integers(0, w - PATCH + 1))
            out.append(img[top:top + PATCH, left:left + PATCH].transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))


# real photographs shipped with scikit-image (no download), never a retina: the fundus benchmark's
# real photograph is skimage.data.retina(), so it must stay out of training
NATURAL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                  "immunohistochemistry", "stereo_motorcycle")


def natural_photos(channels: int) -> list[np.ndarray]:
    """scikit-image's real colour photographs (8-bit), grey if ``channels`` is 1; no retina."""
    from edgeret.build.training.natural import natural_images

    return natural_images(NATURAL_PHOTOS, gray=channels == 1, colour_only=True)


def training_patches(spec: Spec) -> np.ndarray:
    pairs = (phantom(spec.modality, s) for s in range(spec.n_images))
    return patches_from(pairs, spec.patches_per_image, spec.seed)
