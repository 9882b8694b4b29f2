"""The camera's encoder: the `codec-encoder` artifact of an exported bundle (INT8 on ONNX Runtime,
OpenVINO or LiteRT), writing `.ert` streams the hub decodes with the plugin's fp32 decoder.

The bundle holds the encoder graph only; quantization, entropy tables and the model hash come from
the codec catalogue the artifact was exported from (named in the manifest by its weights file), so
a stream from the bundle and one from the plugin's own ONNX carry the same model hash and decode
the same way. `edgeret export` gated the artifact on exactly this round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.bundle.manifest import BundleError, check_hashes, load_manifest
from edgeret.bundle.verify import pick_backend
from edgeret.codec.scale import coded_scale, coded_size, downscale2
from edgeret.codec.session import (
    LATENT_NAMES,
    CodecCatalog,
    CodecModel,
    Encoded,
    RatePoint,
    encode_latents,
    image_for,
    to_model_input,
)
from edgeret.errors import InputError

TASK = "codec-encoder"


class BundleEncoder:
    """Loads a bundle's codec-encoder on its device's first usable backend (or `backend`)."""

    def __init__(self, root: str | Path, catalog: CodecCatalog, backends: Mapping[str, Any],
                 backend: str | None = None, threads: int | None = None) -> None:
        self.root = Path(root)
        manifest = load_manifest(self.root)
        check_hashes(self.root, manifest)  # a tampered encoder never writes streams
        entry = manifest.tasks.get(TASK)
        if entry is None:
            raise BundleError(f"{self.root}: the bundle holds no {TASK} (tasks: "
                              f"{', '.join(sorted(manifest.tasks))})")
        if entry.weights is None:
            raise BundleError(f"{self.root}: its {TASK} entry does not name the codec it was exported from")
        name = Path(entry.weights.file).stem
        if name not in catalog.models:
            raise BundleError(f"{self.root}: its encoder was exported from codec '{name}', which is not "
                              f"installed here (installed: {', '.join(sorted(catalog.models))})")
        self.model: CodecModel = catalog.models[name]
        self.size = tuple(entry.inputs[0].shape[2:])
        plugin, _ = pick_backend(manifest, entry, backends, backend)
        self.backend = plugin.name
        self.precision = entry.precision
        self.runner = plugin.load(self.root / entry.artifact, threads=threads)

    def rate(self, rate: str | float | None) -> RatePoint:
        """The rate point of the bundle's codec closest to `rate` (bpp), or named by id; None: its default."""
        points = sorted(self.model.rates, key=lambda p: p.nominal_bpp)
        if rate is None:
            return self.model.default_point()
        if isinstance(rate, str) and not _is_number(rate):
            for p in points:
                if p.id == rate:
                    return p
            raise BundleError(f"rate point '{rate}' is not one of codec {self.model.name}'s "
                              f"({', '.join(p.id for p in points)})")
        target = float(rate)
        if not target > 0 or not np.isfinite(target):
            raise BundleError(f"--rate must be a positive number of bits per pixel, got {rate}")
        return min(points, key=lambda p: abs(np.log(p.nominal_bpp / target)))

    def encode(self, image: np.ndarray, rate: RatePoint, source: str = "<array>",
               scale: str | int = "auto") -> Encoded:
        """Code one image; a static-shape graph halves it only when the half fits its size."""
        import time

        image = image_for(self.model, image, source)
        h, w = image.shape[:2]
        start = time.perf_counter()
        factor = coded_scale(image, self.model.allows_half_scale(rate), scale)
        static = all(isinstance(d, int) for d in self.size)
        if static and factor == 2 and coded_size(h, w, 2) != self.size and scale == "auto":
            factor = 1  # the graph cannot run the half-size image; code it whole
        coded = downscale2(image) if factor == 2 else image
        ch, cw = coded.shape[:2]
        if static and (ch, cw) != self.size:
            at = "" if factor == 1 else f" (halved: {cw}x{ch})"
            raise InputError(source, f"is {w}x{h}{at}; the bundle's encoder ({self.root}) runs "
                                     f"{self.size[1]}x{self.size[0]} images only (the device profile's size)")
        bits = 8 if image.dtype == np.uint8 else 16
        out = self.runner.run({"image": to_model_input(coded, bits)})
        ys = [np.asarray(out[n], dtype=np.float32) for n in LATENT_NAMES]
        return encode_latents(ys, image.shape, bits, self.model, rate, start, scale=factor)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
