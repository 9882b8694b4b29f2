"""denoise evaluation (build host): PSNR/SSIM of the DnCNN-edge, the autoencoder,
OpenCV non-local means and BM3D on clean images with added noise, plus the
vessel-preservation figures. Shared by `edgeret eval denoise[-oct]` and
`tools/bench_restore.py`.

Protocol: Gaussian noise sigma = 25/255 (colour) or Gamma speckle with 4 looks
(OCT), one fixed seed per image, clipped to [0, 1] and rounded to 8 bits (what
a camera delivers). Our models run through the shipped ONNX model on ONNX
Runtime in 512-pixel tiles (`--backend torch`: the torch weights, whole image).
BM3D (`bm3d` package, profile "np") gets the true sigma; for OCT the standard
deviation of the added noise. NLM: `cv2.fastNlMeansDenoising[Colored]`, 7×7
patches, 21×21 search, h = sigma (0-255 units).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeret.errors import EdgeretError
from edgeret.metrics import psnr
from edgeret.plugin.registrations import EvalRequest, TaskPlugin
from edgeret.reports import markdown_table, write_report

from .processing import add_gaussian_noise, add_speckle, restore

SIGMA = 25.0
LOOKS = 4.0
OURS, AUTOENCODER, BM3D, NLM, NOISY = "DnCNN-edge (ours)", "Autoencoder", "BM3D", "OpenCV NLM", "noisy input"
PAPER = ("Paper (real fundus photographs, sigma 25): DnCNN 40.43 dB / SSIM 0.95 (green-weighted), "
         "39.96 / 0.93 (plain), autoencoder 33.00 / 0.78, noisy input about 22 dB / 0.1.")

Method = Callable[[np.ndarray], np.ndarray]  # noisy H×W(×3) float [0, 1] -> denoised


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=1.0, channel_axis=2 if a.ndim == 3 else None))


def noisy_version(clean01: np.ndarray, seed: int, oct_: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return add_speckle(clean01, LOOKS, rng) if oct_ else add_gaussian_noise(clean01, SIGMA, rng)


def onnx_method(path: Path, task: TaskPlugin, backend: str = "onnxruntime") -> Method:
    from edgeret.plugin.host import Host

    runner = Host().backend(backend).load(path, threads=None)
    from .processing import runner_fn

    fn = runner_fn(runner, task)

    def run(noisy: np.ndarray) -> np.ndarray:
        u16 = np.round(noisy * 65535.0).astype(np.uint16)  # lossless carrier of the 8-bit levels
        return restore(u16, fn, task).astype(np.float32) / 65535.0

    return run


def torch_method(name: str, models_dir: Path) -> Method:
    import torch

    from .recipe import load_variant

    net = load_variant(name, models_dir)

    def run(noisy: np.ndarray) -> np.ndarray:
        x = noisy[None] if noisy.ndim == 2 else np.moveaxis(noisy, 2, 0)
        with torch.no_grad():
            y = net(torch.from_numpy(np.ascontiguousarray(x))[None].float())[0].numpy()
        return np.clip(y[0] if noisy.ndim == 2 else np.moveaxis(y, 0, 2), 0, 1)

    return run


def nlm_method(h: float) -> Method:
    def run(noisy: np.ndarray) -> np.ndarray:
        u8 = np.round(noisy * 255).astype(np.uint8)
        if u8.ndim == 2:
            return cv2.fastNlMeansDenoising(u8, None, h, 7, 21).astype(np.float32) / 255.0
        return cv2.fastNlMeansDenoisingColored(u8, None, h, h, 7, 21).astype(np.float32) / 255.0

    return run


def bm3d_method(sigma01: float | None, cache: Path | None) -> Method | None:
    """BM3D with the given sigma (None: the `sigma` attribute set per image); outputs and their
    run times are cached under `cache` (BM3D takes minutes per megapixel on this CPU)."""
    try:
        import bm3d
    except ImportError:
        return None

    def run(noisy: np.ndarray) -> np.ndarray:
        sigma = sigma01 if sigma01 is not None else float(run.sigma)  # type: ignore[attr-defined]
        key = hashlib.sha256(noisy.tobytes() + f"{sigma:.6f}".encode()).hexdigest()[:20]
        path = cache / f"bm3d-{key}.npy" if cache else None
        if path is not None and path.exists():
            run.cached = True  # type: ignore[attr-defined]
            run.seconds = float(path.with_suffix(".txt").read_text())  # type: ignore[attr-defined]
            return np.load(path)
        run.cached = False  # type: ignore[attr-defined]
        start = time.perf_counter()
        out = bm3d.bm3d_rgb(noisy, sigma) if noisy.ndim == 3 else bm3d.bm3d(noisy, sigma)
        out = np.clip(np.asarray(out, np.float32), 0, 1)
        run.seconds = time.perf_counter() - start  # type: ignore[attr-defined]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, out)
            path.with_suffix(".txt").write_text(f"{run.seconds}\n")  # type: ignore[attr-defined]
        return out

    run.cached = False  # type: ignore[attr-defined]
    return run


def _timed(method: Method, noisy: np.ndarray) -> tuple[np.ndarray, float, bool]:
    start = time.perf_counter()
    out = method(noisy)
    seconds = time.perf_counter() - start
    cached = bool(getattr(method, "cached", False))
    if cached:  # from the cache: report the time the cached run took
        seconds = float(method.seconds)  # type: ignore[attr-defined]
    return out, seconds, cached


def thin_vessel_mask(vessels: np.ndarray) -> np.ndarray:
    """Vessel pixels not inside a vessel wider than ~4 px (opening with a 5×5 disc removes them)."""
    v = vessels.astype(np.uint8)
    thick = cv2.morphologyEx(v, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    thick = cv2.dilate(thick, np.ones((3, 3), np.uint8))
    return (v > 0) & (thick == 0)


def vessel_scores(clean: np.ndarray, out: np.ndarray, thin: np.ndarray, vessels: np.ndarray) -> dict:
    """Green-channel PSNR inside the thin-vessel mask and the thin vessels' contrast kept.

    Contrast = mean green of the background ring around thin vessels minus mean
    green on them; kept = output contrast / clean contrast (1 = preserved,
    < 1 = washed out).
    """
    g_clean, g_out = clean[..., 1], out[..., 1]
    ring = cv2.dilate(thin.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~vessels
    c_clean = g_clean[ring].mean() - g_clean[thin].mean()
    c_out = g_out[ring].mean() - g_out[thin].mean()
    return {"thin_psnr_green": psnr(g_clean[thin], g_out[thin]),
            "thin_contrast_kept": float(c_out / c_clean) if c_clean > 0 else float("nan")}


def run_methods(images: list[tuple[str, np.ndarray]], methods: dict[str, Method], oct_: bool,
                seed: int = 0, vessels: dict[str, np.ndarray] | None = None,
                keep: set[str] | None = None) -> dict[str, Any]:
    """Score every method on every image. `images`: (name, clean uint8). Returns per-image rows
    and, for names in `keep`, the outputs (for crops)."""
    rows, outputs = [], {}
    for index, (name, clean_u8) in enumerate(images):
        clean = clean_u8.astype(np.float32) / 255.0
        noisy = noisy_version(clean, seed * 1000 + index, oct_)
        if oct_:
            for m in methods.values():
                m.sigma = float(np.std(noisy - clean))  # type: ignore[attr-defined]
        results = {NOISY: (noisy, 0.0, False)}
        for label, method in methods.items():
            results[label] = _timed(method, noisy)
        for label, (out, seconds, cached) in results.items():
            row = {"image": name, "method": label, "psnr": psnr(clean, out), "ssim": ssim(clean, out),
                   "seconds": seconds, "cached": cached}
            if vessels is not None and name in vessels:
                thin = thin_vessel_mask(vessels[name])
                row.update(vessel_scores(clean, out, thin, vessels[name]))
            rows.append(row)
        if keep and name in keep:
            outputs[name] = {"clean": clean, **{k: v[0] for k, v in results.items()}}
    return {"rows": rows, "outputs": outputs}


def summarize(rows: list[dict], group: Callable[[str], str]) -> list[dict]:
    """Mean of each metric per (group of images, method)."""
    keys: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        keys.setdefault((group(r["image"]), r["method"]), []).append(r)
    out = []
    for (g, m), rs in keys.items():
        entry = {"set": g, "method": m, "images": len(rs)}
        for k in ("psnr", "ssim", "seconds", "thin_psnr_green", "thin_contrast_kept"):
            vals = [r[k] for r in rs if k in r]
            if vals:
                entry[k] = float(np.mean(vals))
        out.append(entry)
    return out


def default_methods(task: TaskPlugin, variants: list[str], models_dir: Path, backend: str,
                    cache: Path | None, oct_: bool, with_bm3d: bool = True) -> dict[str, Method]:
    from . import COLOR_VARIANTS, OCT_VARIANTS

    files = {**COLOR_VARIANTS, **OCT_VARIANTS}
    labels = {"dncnn": OURS, "dncnn-oct": OURS, "autoencoder": AUTOENCODER}
    methods: dict[str, Method] = {}
    for name in variants:
        if backend == "torch":
            if (models_dir / f"{name}.pt").exists():
                methods[labels[name]] = torch_method(name, models_dir)
        elif (models_dir / files[name]).exists():
            methods[labels[name]] = onnx_method(models_dir / files[name], task, backend)
    if OURS not in methods:
        raise EdgeretError(f"no {task.name} model in {models_dir}; train it with `edgeret train {task.name}`")
    if with_bm3d:
        method = bm3d_method(None if oct_ else SIGMA / 255.0, cache)
        if method is not None:
            methods[BM3D] = method
    methods[NLM] = nlm_method(SIGMA if not oct_ else 20.0)
    return methods


def evaluate(request: EvalRequest, task: TaskPlugin, variants: list[str]) -> dict[str, Any]:
    from edgeret.images.read_write import read_folder_8bit

    from . import WEIGHTS_DIR

    oct_ = task.name == "denoise-oct"
    models_dir = request.models_dir or WEIGHTS_DIR
    images = [(p.name, img) for p, img in read_folder_8bit(request.data_dir, gray=oct_)]
    methods = default_methods(task, variants, models_dir, request.backend,
                              request.out_dir / "cache", oct_)
    result = run_methods(images, methods, oct_)
    summary = summarize(result["rows"], lambda _: str(request.data_dir))
    text = report_markdown(f"{task.name} on {request.data_dir} ({len(images)} images, backend "
                           f"{request.backend})", summary, oct_)
    data = {"task": task.name, "data": str(request.data_dir), "backend": request.backend,
            "summary": summary, "rows": result["rows"]}
    write_report(request.out_dir, f"{task.name}-eval", data, text)
    print(text)
    return data


def report_markdown(title: str, summary: list[dict], oct_: bool) -> str:
    noise = f"speckle {LOOKS:g} looks" if oct_ else f"Gaussian sigma {SIGMA:g}/255"
    rows = [(s["set"], s["method"], s["images"], s["psnr"], s["ssim"], round(s["seconds"], 3))
            for s in summary]
    text = (f"# {title}\n\nNoise: {noise}, clipped, 8-bit.\n" + ("" if oct_ else f"{PAPER}\n") + "\n"
            + markdown_table(("set", "method", "images", "PSNR dB", "SSIM", "s / image"), rows))
    vessel_rows = [(s["set"], s["method"], s["thin_psnr_green"], s["thin_contrast_kept"])
                   for s in summary if "thin_psnr_green" in s]
    if vessel_rows:
        text += ("\n## Thin vessels (phantom vessel masks)\n\nGreen-channel PSNR inside the thin-vessel "
                 "mask, and the share of the thin vessels' contrast (ring around them minus on them) "
                 "the output keeps (1 = all of it).\n\n"
                 + markdown_table(("set", "method", "thin-vessel PSNR dB (green)", "contrast kept"),
                                  vessel_rows))
    return text
