"""sr evaluation (build host): PSNR/SSIM of LapSRN-edge vs bicubic and the ESPCN
baseline at ×2 and ×4, and frames per second on each backend. Shared by
`edgeret eval sr` and `tools/bench_restore.py`.

Protocol: the high-resolution image is cropped to a multiple of 4, degraded
with `processing.degrade` (Gaussian blur sigma = s/2, area down-scaling,
8-bit), restored, and compared with the original; `scale` pixels are shaved
off every border before PSNR/SSIM, as is usual in SR papers. Learned models
run through their ONNX files on ONNX Runtime (tiled, as `edgeret upscale`), or
through torch with `--backend torch`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.devices.vendor_telemetry import quiet_import
from edgeret.errors import EdgeretError
from edgeret.metrics import psnr
from edgeret.plugin.registrations import EvalRequest, TaskPlugin
from edgeret.reports import markdown_table, write_report

from .processing import bicubic, degrade, planes_to_image, runner_fn, upscale

OURS, ESPCN_, BICUBIC = "LapSRN-edge (ours)", "ESPCN", "bicubic"
SCALES = (2, 4)
Method = Callable[[np.ndarray], np.ndarray]  # LR uint8 H×W×3 -> HR uint8


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=1.0, channel_axis=2))


def low_res(hr_u8: np.ndarray, scale: int) -> np.ndarray:
    return np.clip(degrade(hr_u8.astype(np.float32) / 255.0, scale) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def onnx_method(path: Path, task: TaskPlugin, scale: int, backend: str = "onnxruntime") -> Method:
    from edgeret.plugin.host import Host

    runner = Host().backend(backend).load(path, threads=None)
    fn = runner_fn(runner, task)
    return lambda lr: upscale(lr, fn, scale)


def torch_method(name: str, models_dir: Path) -> Method:
    import torch

    from .model import runtime
    from .recipe import load_variant

    net = runtime(load_variant(name, models_dir))

    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(lr, 2, 0), dtype=np.float32) / 255.0)
        with torch.no_grad():
            return planes_to_image(net(x[None]).numpy())

    return run


def methods_for(task: TaskPlugin, scale: int, models_dir: Path, backend: str) -> dict[str, Method]:
    from . import BASELINE_FILES, MODEL_FILES

    methods: dict[str, Method] = {BICUBIC: lambda lr: bicubic(lr, scale)}
    for label, files, variant in ((ESPCN_, BASELINE_FILES, f"espcn-x{scale}"),
                                  (OURS, MODEL_FILES, f"lapsrn-x{scale}")):
        if backend == "torch":
            if (models_dir / f"{variant}.pt").exists():
                methods[label] = torch_method(variant, models_dir)
        elif (models_dir / files[scale]).exists():
            methods[label] = onnx_method(models_dir / files[scale], task, scale, backend)
    if OURS not in methods:
        raise EdgeretError(f"no sr x{scale} model in {models_dir}; train it with `edgeret train sr`")
    return methods


def run_sr(images: list[tuple[str, np.ndarray]], scale: int, methods: dict[str, Method],
           keep: set[str] | None = None) -> dict[str, Any]:
    rows, outputs = [], {}
    for name, img in images:
        h, w = (img.shape[0] // 4) * 4, (img.shape[1] // 4) * 4
        hr = img[:h, :w]
        lr = low_res(hr, scale)
        truth = hr[scale:-scale, scale:-scale].astype(np.float32) / 255.0
        kept = {"truth": hr, "input": lr}
        for label, method in methods.items():
            start = time.perf_counter()
            out = method(lr)
            seconds = time.perf_counter() - start
            est = out[scale:-scale, scale:-scale].astype(np.float32) / 255.0
            rows.append({"image": name, "scale": scale, "method": label, "psnr": psnr(truth, est),
                         "ssim": ssim(truth, est), "seconds": seconds})
            kept[label] = out
        if keep and name in keep:
            outputs[name] = kept
    return {"rows": rows, "outputs": outputs}


def summarize(rows: list[dict], group: Callable[[str], str]) -> list[dict]:
    keys: dict[tuple[str, int, str], list[dict]] = {}
    for r in rows:
        keys.setdefault((group(r["image"]), r["scale"], r["method"]), []).append(r)
    return [{"set": g, "scale": s, "method": m, "images": len(rs),
             **{k: float(np.mean([r[k] for r in rs])) for k in ("psnr", "ssim", "seconds")}}
            for (g, s, m), rs in keys.items()]


def frames_per_second(fn: Callable[[], Any], seconds: float = 3.0, warmup: int = 3,
                      threads: int = 1) -> tuple[float, float]:
    """(frames per wall-clock second, frames per `threads` CPU-seconds of this process).

    The second figure estimates the rate on an otherwise idle machine with
    `threads` cores: on a shared machine the wall clock includes the time other
    jobs hold the cores (it is conservative: spinning worker threads count too).
    """
    for _ in range(warmup):
        fn()
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return count / wall, count / max(used / threads, 1e-9)


def measure_fps(models: dict[str, Path], size: int = 512, backends: tuple[str, ...] = ("onnxruntime",
                "openvino"), threads: int = 2, seconds: float = 3.0) -> list[dict]:
    """fps of each model on each backend: model only (float planes) and end to end
    (uint8 H×W×3 in, uint8 out: conversion, model, shuffle + conversion)."""
    import cv2

    from edgeret.plugin.host import Host

    host = Host()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    x = np.ascontiguousarray(np.moveaxis(frame, 2, 0)[None], dtype=np.float32) / np.float32(255)
    wall, cpu = frames_per_second(lambda: cv2.resize(frame, (2 * size, 2 * size),
                                                     interpolation=cv2.INTER_CUBIC), seconds, threads=1)
    rows = [{"model": "bicubic x2 (cv2.resize)", "backend": "opencv", "fps_model": wall,
             "fps_end_to_end": wall, "fps_model_idle_estimate": cpu, "fps_end_to_end_idle_estimate": cpu}]
    for label, path in models.items():
        for name in backends:
            backend = host.backend(name)
            if not backend.available().ok:
                rows.append({"model": label, "backend": name, "fps_model": None, "fps_end_to_end": None,
                             "note": backend.available().reason})
                continue
            runner = backend.load(path, threads=threads)
            if name == "openvino":  # static input shape: what a camera pipeline compiles
                runner = _static_openvino(path, size, threads) or runner
            feeds = {runner.input_names[0]: x}

            def end_to_end(r=runner):
                chw = np.moveaxis(frame, 2, 0)[None].astype(np.float32) * np.float32(1 / 255)
                return planes_to_image(r.run({r.input_names[0]: chw})[r.output_names[0]])

            m_wall, m_cpu = frames_per_second(lambda r=runner, f=feeds: r.run(f), seconds, threads=threads)
            e_wall, _ = frames_per_second(end_to_end, seconds, threads=threads)
            # idle estimate end to end: the model's estimate plus the single-threaded numpy
            # conversion's CPU time (measured alone; the backends' spinning threads would
            # otherwise be billed to it)
            planes = runner.run(feeds)[runner.output_names[0]]

            def convert(p=planes):
                np.moveaxis(frame, 2, 0)[None].astype(np.float32) * np.float32(1 / 255)
                return planes_to_image(p)

            _, c_cpu = frames_per_second(convert, seconds / 2, threads=1)
            rows.append({"model": label, "backend": name, "fps_model": m_wall, "fps_end_to_end": e_wall,
                         "fps_model_idle_estimate": m_cpu,
                         "fps_end_to_end_idle_estimate": 1.0 / (1.0 / m_cpu + 1.0 / c_cpu)})
    for r in rows:
        r["load_average_1min"] = round(os.getloadavg()[0], 2)
    return rows


def _static_openvino(path: Path, size: int, threads: int | None):
    """An OpenVINO runner compiled for a fixed 1×3×size×size input (None if that fails)."""
    try:
        ov = quiet_import("openvino")
    except ImportError:
        return None

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): [1, 3, size, size]})
    config = {"INFERENCE_NUM_THREADS": threads or min(os.cpu_count() or 1, 4),
              "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    class Runner:
        input_names = [p.get_any_name() for p in compiled.inputs]
        output_names = [p.get_any_name() for p in compiled.outputs]

        def run(self, feeds):
            res = request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
            return {p.get_any_name(): v for p, v in res.items()}

    return Runner()


def report_markdown(title: str, summary: list[dict]) -> str:
    rows = [(s["set"], f"x{s['scale']}", s["method"], s["images"], s["psnr"], s["ssim"],
             round(s["seconds"], 3)) for s in summary]
    gains = []
    for s in summary:
        if s["method"] == OURS:
            base = next(b for b in summary if b["set"] == s["set"] and b["scale"] == s["scale"]
                        and b["method"] == BICUBIC)
            gains.append(f"- {s['set']} x{s['scale']}: {s['psnr'] - base['psnr']:+.2f} dB over bicubic")
    return (f"# {title}\n\nLow resolution: Gaussian blur sigma = s/2, area down-scaling, 8-bit; "
            "PSNR/SSIM after shaving `scale` pixels per border.\n\n"
            + markdown_table(("set", "scale", "method", "images", "PSNR dB", "SSIM", "s / image"), rows)
            + "\n" + "\n".join(gains) + "\n")


def evaluate(request: EvalRequest, task: TaskPlugin) -> dict[str, Any]:
    from edgeret.images.read_write import read_folder_8bit

    from . import WEIGHTS_DIR

    models_dir = request.models_dir or WEIGHTS_DIR
    images = [(p.name, img) for p, img in read_folder_8bit(request.data_dir, gray=False)]
    rows = []
    for scale in SCALES:
        rows += run_sr(images, scale, methods_for(task, scale, models_dir, request.backend))["rows"]
    summary = summarize(rows, lambda _: str(request.data_dir))
    text = report_markdown(f"sr on {request.data_dir} ({len(images)} images, backend {request.backend})",
                           summary)
    data = {"task": task.name, "data": str(request.data_dir), "backend": request.backend,
            "summary": summary, "rows": rows}
    write_report(request.out_dir, "sr-eval", data, text)
    print(text)
    return data
