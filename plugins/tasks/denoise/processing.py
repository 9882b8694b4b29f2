"""denoise pre/post-processing and the tiled restore pipeline: pure numpy, no torch.

Input conventions (the same for every backend, training and the benchmark):

* colour task `denoise`: RGB uint8 or uint16 (H×W×3). A grayscale image is
  replicated to three channels and the result converted back to one channel
  (the mean of the three); RGBA files lose alpha when read. Anything else
  (2 or 4+ channels, float or signed pixels) is an InputError.
* OCT task `denoise-oct`: grayscale uint8/uint16 (H×W). A colour image whose
  three channels are equal is reduced to one; a real colour image is an
  InputError that points at `denoise`.
* 16-bit images are scaled by 1/65535 and written back as 16-bit.
* Smaller than MIN_SIDE pixels per side is an InputError, and so is more than
  `edgeret.images.tiling.MAX_OUTPUT_PIXELS` (40 MP). Sizes between are
  processed in overlapping tiles (`edgeret.images.tiling`) by `restore`; the plain
  `preprocess` (one whole-image pass, used by `edgeret run` without `-o`) refuses
  more than MAX_WHOLE_PIXELS and says to use the tiled path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgeret.errors import InputError
from edgeret.images.read_write import ARRAY
from edgeret.images.tiling import (
    check_output_size,
    from_planes,
    pad_to_at_least,
    pad_to_multiple,
    run_tiled,
    to_planes,
)
from edgeret.plugin.registrations import TaskPlugin

MIN_SIDE = 16
MAX_WHOLE_PIXELS = 2048 * 2048
MULTIPLE = 1  # sizes the models need to be multiples of (1: any)
TILE = 512
HALO = 16  # >= the receptive-field radius of DnCNN-edge (10 px): tiles match the whole image
OCT_HALO = 32  # denoise-oct: 12 layers at half resolution reach 25 px (model.OCT_CONFIGS)
OCT_GRID = 2  # denoise-oct runs its body on 2x2 pixel-unshuffled planes: tiles start on even pixels
BLEND = 16
GREEN_WEIGHTS = (1.0, 3.0, 2.0)  # the paper's Eq. 1: red 1, green 3, blue 2
OCT_RANGE_DB = 36.0  # typical display range of a log-compressed B-scan (phantoms: 34-39 dB)

RunFn = Callable[[np.ndarray], np.ndarray]


def check_image(image: np.ndarray, task: TaskPlugin) -> tuple[np.ndarray, bool]:
    """Validate and convert to the task's channel count; returns (array, was_gray)."""
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(ARRAY, f"{task.name} takes 8- or 16-bit integer images, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(ARRAY, f"{task.name} expects H×W (gray) or H×W×3 (RGB), got shape {arr.shape}")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise InputError(ARRAY, f"image is {arr.shape[1]}x{arr.shape[0]}; {task.name} needs at least "
                                f"{MIN_SIDE} pixels per side")
    want = task.inputs[0].shape[1]
    gray = arr.ndim == 2
    if want == 1 and not gray:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise InputError(ARRAY, f"{task.name} expects a grayscale OCT B-scan, got a colour image "
                                    "(use the `denoise` task for colour photographs)")
        arr, gray = np.ascontiguousarray(arr[..., 0]), True
    if want == 3 and gray:
        arr = np.repeat(arr[..., None], 3, axis=2)  # documented: gray in, gray out
    return arr, gray


def preprocess(image: np.ndarray, task: TaskPlugin) -> dict[str, np.ndarray]:
    """Whole image -> {"noisy": 1×C×H×W float32}."""
    arr, _ = check_image(image, task)
    if arr.shape[0] * arr.shape[1] > MAX_WHOLE_PIXELS:
        raise InputError(ARRAY, f"image is {arr.shape[1]}x{arr.shape[0]}: too large for one pass; "
                                f"use `edgeret denoise IMAGE -o OUT.png` (or `edgeret run {task.name} "
                                "IMAGE -o OUT.png`), which processes it in overlapping tiles")
    planes, _ = pad_to_multiple(to_planes(arr), MULTIPLE)
    return {task.inputs[0].name: planes[None]}


def postprocess(outputs: Mapping[str, np.ndarray], task: TaskPlugin) -> dict[str, Any]:
    """A JSON-able summary: output size and the standard deviation of the removed noise (0-255)."""
    clean = np.asarray(outputs[task.outputs[0].name])
    noise = np.asarray(outputs[task.outputs[1].name])
    return {
        "height": int(clean.shape[2]), "width": int(clean.shape[3]), "channels": int(clean.shape[1]),
        "removed_noise_sigma": round(float(noise.std()) * 255.0, 3),
    }


def restore(image: np.ndarray, run: RunFn, task: TaskPlugin, *, tile: int = TILE,
            fixed: tuple[int, int] | None = None, flips: int = 1) -> np.ndarray:
    """Denoise a whole image of any size with `run` (1×C×h×w -> 1×C×h×w), in tiles.

    `fixed`: the model takes only that (H, W) (a device bundle's static-shape export): every
    call gets a tile of exactly that size; images smaller than it are reflect-padded.
    `flips`: 2 or 4 average the model over left-right (and up-down) flips of every tile
    (test-time augmentation: `flips` times the compute).
    Returns an array of the input's shape and dtype (gray stays gray).
    """
    run = flip_averaged(run, flips)
    shape = np.shape(image)
    if len(shape) >= 2:
        check_output_size(shape[0], shape[1], "the denoised image")
    arr, gray = check_image(image, task)
    if task.inputs[0].shape[1] == 1:  # OCT: tile on the 2x2 grid the model's body sees (exact tiles)
        g = OCT_GRID
        planes, (height, width) = pad_to_multiple(to_planes(arr), g)
        if fixed is not None:
            _check_fixed(fixed, g, OCT_HALO, task)
            planes = _pad_at_least(planes, fixed)
            size: int | tuple[int, int] = (fixed[0] // g, fixed[1] // g)
        else:
            size = max(tile // g, 2 * (OCT_HALO // g + BLEND) + 1)
        out = run_tiled(_unshuffle(planes, g), lambda x: _unshuffle(run(_shuffle(x, g)), g),
                        tile=size, halo=OCT_HALO // g, blend=BLEND)
        out = _shuffle(out, g)[:, :height, :width]
        return from_planes(out, arr.dtype)
    planes, (height, width) = pad_to_multiple(to_planes(arr), MULTIPLE)
    if fixed is not None:
        _check_fixed(fixed, MULTIPLE, HALO, task)
        planes = _pad_at_least(planes, fixed)
        size = fixed
    else:
        size = max(tile - tile % MULTIPLE, 2 * (HALO + BLEND) + MULTIPLE)
    out = run_tiled(planes, run, tile=size, halo=HALO, blend=BLEND)[:, :height, :width]
    if gray and out.shape[0] == 3:
        out = out.mean(axis=0, keepdims=True)
    return from_planes(out, arr.dtype)


FLIP_SETS = {1: ((False, False),), 2: ((False, False), (False, True)),
             4: ((False, False), (False, True), (True, False), (True, True))}


def flip_averaged(run: RunFn, flips: int) -> RunFn:
    """`run` averaged over flipped copies of its N×C×H×W input, each output flipped back."""
    if flips not in FLIP_SETS:
        raise InputError(ARRAY, f"flips must be 1, 2 or 4, not {flips}")
    if flips == 1:
        return run

    def averaged(x: np.ndarray) -> np.ndarray:
        total = None
        for ud, lr in FLIP_SETS[flips]:
            axes = tuple(a for a, on in ((-2, ud), (-1, lr)) if on)
            y = np.asarray(run(np.ascontiguousarray(np.flip(x, axes) if axes else x)), np.float32)
            y = np.flip(y, axes) if axes else y
            total = y if total is None else total + y
        return total / np.float32(flips)

    return averaged


def _check_fixed(fixed: tuple[int, int], grid: int, halo: int, task: TaskPlugin) -> None:
    least = 2 * (halo + grid * BLEND) + grid
    if any(side % grid or side < least for side in fixed):
        raise InputError(ARRAY, f"{task.name}: a fixed model size of {fixed[1]}x{fixed[0]} cannot be tiled "
                                f"(sides must be multiples of {grid} and at least {least})")


def _pad_at_least(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Reflect-pad C×H×W at the bottom/right to at least size (the padding is cropped off after)."""
    return np.ascontiguousarray(pad_to_at_least(planes.transpose(1, 2, 0), *size).transpose(2, 0, 1))


def _unshuffle(x: np.ndarray, g: int) -> np.ndarray:
    """(N×)C×H×W -> (N×)C·g²×H/g×W/g, the layout of torch's pixel_unshuffle."""
    *lead, c, h, w = x.shape
    n = len(lead)
    y = x.reshape(*lead, c, h // g, g, w // g, g).transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return np.ascontiguousarray(y.reshape(*lead, c * g * g, h // g, w // g))


def _shuffle(x: np.ndarray, g: int) -> np.ndarray:
    """Inverse of `_unshuffle`."""
    *lead, cg, h, w = x.shape
    c = cg // (g * g)
    y = x.reshape(*lead, c, g, g, h, w)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return np.ascontiguousarray(y.reshape(*lead, c, h * g, w * g))


def runner_fn(runner, task: TaskPlugin) -> RunFn:
    """Adapt a backend Runner to the tile function `restore` expects (first output)."""
    name_in, name_out = task.inputs[0].name, task.outputs[0].name
    return lambda x: runner.run({name_in: x})[name_out]


# --- noise models (training, evaluation, benchmark) ----------------------------------------

def add_gaussian_noise(clean01: np.ndarray, sigma255: float, rng: np.random.Generator,
                       quantize: bool = True) -> np.ndarray:
    """Additive white Gaussian noise of std sigma/255, clipped to [0, 1] and, like a camera's
    8-bit output, rounded to 1/255 steps."""
    noisy = np.clip(clean01 + rng.normal(0.0, sigma255 / 255.0, clean01.shape), 0.0, 1.0)
    if quantize:
        noisy = np.round(noisy * 255.0) / 255.0
    return noisy.astype(np.float32)


def add_speckle(clean01: np.ndarray, looks: float, rng: np.random.Generator,
                range_db: float = OCT_RANGE_DB, quantize: bool = True) -> np.ndarray:
    """Multiplicative speckle on a log-compressed OCT display image.

    The linear intensity is multiplied by Gamma(L, 1/L) (unit mean, L looks); on
    a display of `range_db` dB over [0, 1] that adds 10 log10(G) / range_db.
    """
    gain = rng.gamma(looks, 1.0 / looks, clean01.shape)
    noisy = np.clip(clean01 + 10.0 * np.log10(np.maximum(gain, 1e-6)) / range_db, 0.0, 1.0)
    if quantize:
        noisy = np.round(noisy * 255.0) / 255.0
    return noisy.astype(np.float32)
