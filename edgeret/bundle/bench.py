"""`edgeret bench BUNDLE [--compare]`: latency, throughput, peak memory and size per task and backend.

Each measurement runs in its own subprocess (`python -m edgeret.bundle.bench
JSON`), so peak memory is the process's own high-water mark
(Linux: VmHWM, which exec resets, unlike ru_maxrss, which a child inherits from
its parent; elsewhere `resource.getrusage(...).ru_maxrss`, psutil on Windows)
including the native runtime's allocations, which tracemalloc cannot see.
Figures: latency per image at batch 1 (median and p95 over `runs` after
`warmup` runs), throughput = images per second of those single-stream runs,
peak RSS of the process and its growth from loading and running the model
(after the runtime library was imported), model size on disk.

`--compare` exports the task again for fp32 torch, ONNX Runtime fp32/int8,
OpenVINO fp32/int8 and LiteRT fp32/int8 (calibration from the task's sampler),
runs each through the accuracy gate on a held-out set, benchmarks each the same
way and reports INT8 vs fp32 speed-ups per runtime. Build host only (torch).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeret import reports
from edgeret.bundle.manifest import check_hashes, load_golden, load_manifest
from edgeret.bundle.verify import pick_backend
from edgeret.errors import EdgeretError

# (label, runtime, precision): what --compare runs, in this order
COMPARE_VARIANTS = (
    ("torch fp32", "torch", "fp32"),
    ("onnxruntime fp32", "onnxruntime", "fp32"),
    ("onnxruntime int8", "onnxruntime", "int8"),
    ("openvino fp32", "openvino", "fp32"),
    ("openvino int8", "openvino", "int8"),
    ("litert fp32", "litert", "fp32"),
    ("litert int8", "litert", "int8"),
)
WORKER_TIMEOUT = 600


# ---------------------------------------------------------------------------
# the worker (runs in a subprocess)
# ---------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    Linux: VmHWM from /proc/self/status, which starts afresh at exec (ru_maxrss would carry the
    parent's high-water mark over fork + exec). Elsewhere ru_maxrss, or psutil on Windows."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _worker(job: Mapping[str, Any]) -> dict[str, Any]:
    golden = load_golden(job["golden"])
    feeds = {name: array[:1] for name, array in golden["input"].items()}
    threads = int(job.get("threads") or 1)
    if job["runtime"] == "torch":
        import torch

        from edgeret.build.export.task_models import runtime_model
        from edgeret.plugin.host import Host

        torch.set_num_threads(threads)
        task = Host().task(job["task"])
        baseline = _peak_rss_mb()
        started = time.perf_counter()
        module = runtime_model(task, Path(job["weights"]) if job.get("weights") else None)
        args = [torch.from_numpy(feeds[s.name]) for s in task.inputs]
        load_s = time.perf_counter() - started

        def run() -> None:
            with torch.no_grad():
                module(*args)
    else:
        from edgeret.plugin.host import Host

        plugin = Host().backend(job["runtime"])
        availability = plugin.available()  # imports the runtime library
        if not availability.ok:
            raise EdgeretError(f"backend '{plugin.name}' is unavailable: {availability.reason}")
        baseline = _peak_rss_mb()
        started = time.perf_counter()
        runner = plugin.load(job["artifact"], threads=threads)
        load_s = time.perf_counter() - started

        def run() -> None:
            runner.run(feeds)
    for _ in range(int(job["warmup"])):
        run()
    times = []
    for _ in range(int(job["runs"])):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000.0)
    peak = _peak_rss_mb()
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "latency_ms_median": round(statistics.median(times), 3), "latency_ms_p95": round(p95, 3),
        "latency_ms_mean": round(statistics.fmean(times), 3),
        "throughput_ips": round(1000.0 * len(times) / sum(times), 2),
        "peak_rss_mb": round(peak, 1), "runtime_rss_mb": round(baseline, 1),
        "model_rss_mb": round(peak - baseline, 1), "load_s": round(load_s, 3),
        "runs": len(times), "threads": threads,
    }


def run_worker(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; EdgeretError with its last stderr line on failure."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(job.get("threads") or 1)}
    proc = subprocess.run([sys.executable, "-m", "edgeret.bundle.bench", json.dumps(dict(job))],
                          capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("EDGERET-BENCH ")]
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise EdgeretError(f"benchmark of {job.get('label', job['runtime'])} failed: "
                           f"{tail[-1] if tail else 'no output'}")
    return json.loads(lines[-1].removeprefix("EDGERET-BENCH "))


# ---------------------------------------------------------------------------
# bundle benchmark
# ---------------------------------------------------------------------------


def _size(root: Path, files: Sequence[str]) -> int:
    return sum((root / f).stat().st_size for f in files)


def machine() -> dict[str, Any]:
    return {"cpu": platform.processor() or platform.machine(), "machine": platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def bench_bundle(root: str | Path, backends: Mapping[str, Any], *, backend: str | None = None,
                 tasks: Sequence[str] = (), runs: int = 50, warmup: int = 5, threads: int = 1,
                 rounds: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    root = Path(root)
    manifest = load_manifest(root)
    check_hashes(root, manifest)
    names = list(tasks) or list(manifest.tasks)
    rows = []
    for name in names:
        if name not in manifest.tasks:
            raise EdgeretError(f"task '{name}' is not in this bundle (it has {', '.join(manifest.tasks)})")
        entry = manifest.tasks[name]
        plugin, _ = pick_backend(manifest, entry, backends, backend)
        log(f"bench {name} on {plugin.name} ({entry.precision} {entry.format}) ...")
        job = {"runtime": plugin.name, "artifact": str(root / entry.artifact),
               "golden": str(root / entry.golden.file), "runs": runs, "warmup": warmup,
               "threads": threads, "label": f"{name} on {plugin.name}"}
        measured = [run_worker(job) for _ in range(max(1, rounds))]
        figures = min(measured, key=lambda f: f["latency_ms_median"])
        figures["round_medians_ms"] = [f["latency_ms_median"] for f in measured]
        gate = entry.gate
        rows.append({"task": name, "variant": f"{plugin.name} {entry.precision}", "backend": plugin.name,
                     "precision": entry.precision, "format": entry.format,
                     "size_bytes": _size(root, entry.files),
                     "gate": {"metric": gate.metric, "fp32": gate.fp32, "exported": gate.exported,
                              "drop": gate.drop, "passed": gate.passed},
                     **figures})
    return {"bundle": str(root), "device": manifest.device.name, "machine": machine(),
            "runs": runs, "warmup": warmup, "threads": threads, "rounds": rounds, "rows": rows}


# ---------------------------------------------------------------------------
# --compare
# ---------------------------------------------------------------------------


def compare_task(host: Any, task_name: str, profile_sizes: Mapping[str, Any], *, heldout: int,
                 calib_size: int, runs: int, warmup: int, threads: int, variants: Sequence[str] = (),
                 progress: bool = True, rounds: int = 3,
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Export `task_name` for every runtime/precision, gate each against torch fp32, benchmark each.

    Timing runs `rounds` times, the variants interleaved, and keeps each variant's round with the
    lowest median: on a shared machine that is the best estimate of its unloaded speed."""
    from edgeret.build.export import artifacts, calibration
    from edgeret.build.export import gate as gates
    from edgeret.build.export import task_models as tm
    from edgeret.build.export.targets import target_for
    from edgeret.bundle.manifest import save_golden

    task = tm.task_with_input_size(host.task(task_name), profile_sizes.get(task_name))
    tm.import_torch(threads)
    module = tm.runtime_model(task)
    rule = gates.gate_rule(task)
    data = gates.heldout_set(task, heldout, progress=progress)
    reference = tm.torch_outputs(module, task, data.feeds)
    calibration, calib_info = calibration.calibration_feeds(task, None, calib_size, 0, progress)
    exporters, backends = host.exporters(), host.backends()
    chosen = [v for v in COMPARE_VARIANTS if not variants or v[0] in variants or v[1] in variants]
    rows, jobs = [], []
    with tempfile.TemporaryDirectory(prefix="edgeret-compare-") as tmp:
        tmp_path = Path(tmp)
        golden = tmp_path / "golden.npz"
        save_golden(golden, data.feeds[0], {s.name: reference[s.name][:1] for s in task.outputs}, {})
        for label, runtime, precision in chosen:
            row: dict[str, Any] = {"task": task.name, "variant": label, "backend": runtime,
                                   "precision": precision}
            try:
                if runtime == "torch":
                    weights = Path(task.default_weights)
                    row.update({"format": "torch", "size_bytes": weights.stat().st_size})
                    result = gates.evaluate_gate(rule, data, reference, reference, "fp32", "torch")
                    row["gate"] = {"metric": result.rule.metric, "unit": result.rule.unit,
                                   "fp32": result.fp32, "exported": result.fp32, "drop": 0.0, "n": result.n,
                                   "note": "the fp32 reference"}
                    job = {"runtime": "torch", "task": task_name, "golden": str(golden)}
                else:
                    target = target_for(runtime, exporters)
                    if target is None or precision not in target.exporters:
                        raise EdgeretError(f"no exporter for {runtime} {precision}")
                    plugin = backends.get(runtime)
                    if plugin is None or not plugin.available().ok:
                        raise EdgeretError(f"backend {runtime} is unavailable here")
                    log(f"compare {task.name}: exporting {label} ...")
                    out = tmp_path / runtime / precision / f"model{target.suffix}"
                    artifact = artifacts.export_artifact(exporters, target, precision, module, task, out,
                                                  calibration if precision == "int8" else None, {})
                    files = [p for p in artifact.parent.iterdir() if p.is_file()]
                    row.update({"format": target.format, "size_bytes": sum(p.stat().st_size for p in files)})
                    runner = plugin.load(artifact, threads=threads)
                    exported = tm.runner_outputs(runner, task, data.feeds, f"{task.name}: {label}", progress)
                    del runner
                    result = gates.evaluate_gate(rule, data, reference, exported, precision, runtime)
                    row["gate"] = {k: v for k, v in result.to_dict().items()
                                   if k in ("metric", "unit", "fp32", "exported", "drop", "passed",
                                            "agreement_with_fp32", "allowed_drop", "n")}
                    job = {"runtime": runtime, "artifact": str(artifact), "golden": str(golden)}
                jobs.append((row, {**job, "runs": runs, "warmup": warmup, "threads": threads,
                                   "label": f"{task.name} {label}"}))
            except EdgeretError as exc:
                row["error"] = str(exc)
                log(f"compare {task.name}: {label}: {exc}")
            rows.append(row)
        for round_index in range(max(1, rounds)):
            log(f"compare {task.name}: timing round {round_index + 1}/{rounds} ...")
            for row, job in jobs:
                if "error" in row:
                    continue
                try:
                    figures = run_worker(job)
                except EdgeretError as exc:
                    row["error"] = str(exc)
                    continue
                row.setdefault("round_medians_ms", []).append(figures["latency_ms_median"])
                if figures["latency_ms_median"] <= row.get("latency_ms_median", float("inf")):
                    row.update(figures)
    by_label = {r["variant"]: r for r in rows if "latency_ms_median" in r}
    for runtime in ("onnxruntime", "openvino", "litert"):
        fp32, int8 = by_label.get(f"{runtime} fp32"), by_label.get(f"{runtime} int8")
        if fp32 and int8:
            int8["speedup_vs_fp32"] = round(fp32["latency_ms_median"] / int8["latency_ms_median"], 2)
    torch_row = by_label.get("torch fp32")
    for row in by_label.values():
        if torch_row:
            row["speedup_vs_torch"] = round(torch_row["latency_ms_median"] / row["latency_ms_median"], 2)
        row["calibration"] = calib_info if row["precision"] == "int8" else None
    return rows


# ---------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "pass" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["task", "variant", "size KB", "median ms", "p95 ms", "img/s", "peak RSS MB",
               "model RSS MB", "int8 speed-up", "metric", "drop", "gate"]
    out = []
    for r in rows:
        gate = r.get("gate") or {}
        if "error" in r:
            out.append([r["task"], r["variant"], "-", "-", "-", "-", "-", "-", "-", "-", "-",
                        f"error: {r['error'][:60]}"])
            continue
        out.append([
            r["task"], r["variant"], _fmt(r.get("size_bytes", 0) / 1024, 0), _fmt(r.get("latency_ms_median")),
            _fmt(r.get("latency_ms_p95")), _fmt(r.get("throughput_ips"), 1), _fmt(r.get("peak_rss_mb"), 0),
            _fmt(r.get("model_rss_mb"), 0),
            f"{r['speedup_vs_fp32']:.2f}x" if r.get("speedup_vs_fp32") else "-",
            f"{gate.get('metric', '-')} {_fmt(gate.get('exported'))}" if gate.get("exported") is not None
            else str(gate.get("metric", "-")),
            _fmt(gate.get("drop")), _fmt(gate.get("passed")) if "passed" in gate else "-",
        ])
    return headers, out


def markdown(report: Mapping[str, Any], title: str) -> str:
    headers, rows = table_rows(report["rows"])
    m = report["machine"]
    lines = [f"# {title}", "",
             f"Machine: {m['cpu']} ({m['machine']}, {m['cores']} cores), Python {m['python']}; "
             f"{report['threads']} thread(s), batch 1, {report['runs']} runs after {report['warmup']} "
             f"warm-up, best median of {report.get('rounds', 1)} round(s). Peak RSS: the benchmark "
             "process's high-water mark (VmHWM); model RSS: its growth "
             "after the runtime library was imported. Drop: the task metric's fp32 - exported, on the "
             "held-out set.",
             "", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: Path, stem: str, title: str) -> list[Path]:
    return reports.write_report(out_dir, stem, report, markdown(report, title))


def main(argv: Sequence[str]) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    try:
        result = _worker(json.loads(argv[0]))
    except EdgeretError as exc:
        print(f"edgeret: error: {exc}", file=sys.stderr)
        return 2
    print("EDGERET-BENCH " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
