"""scikit-image's bundled photographs (no download) as extra training images for image-to-image tasks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def natural_images(names: Sequence[str], gray: bool, colour_only: bool = False) -> list[np.ndarray]:
    """uint8 images of ``skimage.data``'s ``names``; [] without scikit-image.

    ``gray``: RGB converted to luma; otherwise grey images are repeated to RGB,
    or left out with ``colour_only``. A loader returning several arrays (a stereo
    pair with its disparity map) contributes its colour images.
    """
    try:
        import skimage.data as sd
    except ImportError:
        return []
    images = []
    for name in names:
        loaded = getattr(sd, name)()
        for img in loaded if isinstance(loaded, tuple) else (loaded,):
            img = np.asarray(img)
            if colour_only and img.ndim != 3:
                continue
            if img.ndim == 3 and img.shape[2] == 4:
                img = img[..., :3]
            if gray and img.ndim == 3:
                img = (img.astype(np.float32) @ LUMA).round()
            if not gray and img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            images.append(img.astype(np.uint8))
    return images
