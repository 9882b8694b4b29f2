"""denoise-oct as the device bundles ship it: exported, fixed-size, tiled, on real B-scans.

    python tools/bench_denoise_oct_export.py [--devices x86-cpu,intel-x86,...] [--int8-too]
        [--data ../shared/data/real/oct-denoise] [--work out/oct-export] [--out benchmarks]

For every device profile: `edgeret export --device D --tasks denoise-oct`
(the profile's default precision, falling back along its chain as export
does; `--int8-too` also forces int8 on profiles whose default is not int8),
then the bundle's artifact runs each real noisy Duke B-scan (900×450) through
`processing.restore(..., fixed=the profile's tile)` exactly as `edgeret
denoise --oct --model BUNDLE/denoise-oct/model.*` does, on the backend the
export gated on (Jetson: ONNX Runtime with the fp16 copy of the ONNX, as the
gate). Reference: the fp32 plugin model (any-size ONNX, as `edgeret denoise
--oct` runs it); both outputs are 8-bit, as written to disk. Figures per
device, side by side in one run: PSNR against the registered average (the
clean reference), its drop from fp32 (the export gate's rule: at most
0.2 dB), and the PSNR of the exported output against the fp32 output
(agreement). Writes OUT/denoise-oct-export.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeret import metrics

REPO = Path(__file__).resolve().parents[1]
DEVICES = ("x86-cpu", "intel-x86", "raspberry-pi-5", "jetson-orin-nano", "jetson-agx-orin")
ALLOWED_DB = 0.2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """edgeret's PSNR with identical images at 120 dB (finite in the JSON)."""
    return min(metrics.psnr(a, b), 120.0)


def export(device: str, precision: str, out: Path, threads: int) -> None:
    cmd = [sys.executable, "-m", "edgeret", "export", "--device", device, "--tasks", "denoise-oct",
           "--precision", precision, "--threads", str(threads), "-o", str(out), "--force", "--quiet"]
    subprocess.run(cmd, check=True, cwd=REPO)


def bundle_runner(bundle: Path, threads: int, tmp: Path):
    """(run function, fixed size, entry) for the bundle's denoise-oct artifact on its gate backend."""
    from edgeret.bundle.manifest import load_manifest
    from edgeret.plugin.host import Host
    from edgeret_plugins.tasks.denoise import task_plugins
    from edgeret_plugins.tasks.denoise.processing import runner_fn

    manifest = load_manifest(bundle)
    entry = manifest.tasks["denoise-oct"]
    artifact = bundle / entry.artifact
    if manifest.export["target_backend"] == "tensorrt" and entry.precision == "fp16":
        from edgeret.build.export.artifacts import fp16_proxy

        artifact = fp16_proxy(artifact, tmp)
    runner = Host().backend(entry.gate_backend).load(artifact, threads=threads)
    shape = entry.inputs[0].shape
    return runner_fn(runner, task_plugins()[1]), (int(shape[2]), int(shape[3])), entry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default=",".join(DEVICES))
    ap.add_argument("--int8-too", action="store_true")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/real/oct-denoise")
    ap.add_argument("--work", type=Path, default=REPO / "out/oct-export")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-export", action="store_true", help="reuse the bundles under --work")
    args = ap.parse_args()

    from edgeret.plugin.host import device_catalog
    from edgeret.reports import markdown_table, write_report
    from edgeret_plugins.tasks.denoise import WEIGHTS_DIR, task_plugins
    from edgeret_plugins.tasks.denoise.processing import restore
    from edgeret_plugins.tasks.denoise.real_pairs import read_real_pairs

    task = task_plugins()[1]
    subjects = read_real_pairs(args.data)
    from edgeret.plugin.host import Host
    from edgeret_plugins.tasks.denoise.processing import runner_fn

    fp32 = runner_fn(Host().backend("onnxruntime").load(WEIGHTS_DIR / "denoise_oct.onnx",
                                                        threads=args.threads), task)
    scans = []
    for s in subjects:
        ref = restore(s.primary, fp32, task).astype(np.float32) / 255.0
        scans.append((s.name, s.primary, s.clean.astype(np.float32) / 255.0, ref))
    runs = []
    catalog = device_catalog(Host())
    for device in args.devices.split(","):
        profile = catalog.resolve(device)
        precisions = ["auto"]
        if args.int8_too and profile.default_precision != "int8" and "int8" in profile.precisions:
            precisions.append("int8")
        for precision in precisions:
            bundle = args.work / f"{device}-{precision}"
            if not args.skip_export:
                start = time.time()
                export(device, precision, bundle, args.threads)
                print(f"{device} {precision}: exported in {time.time() - start:.0f} s", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                run, fixed, entry = bundle_runner(bundle, args.threads, Path(tmp))
                rows = []
                for name, noisy, clean, ref in scans:
                    out = restore(noisy, run, task, fixed=fixed).astype(np.float32) / 255.0
                    rows.append({"subject": name, "fp32": psnr(clean, ref), "exported": psnr(clean, out),
                                 "vs_fp32": psnr(ref, out)})
            fp, ex = np.mean([r["fp32"] for r in rows]), np.mean([r["exported"] for r in rows])
            runs.append({"device": device, "requested": precision, "precision": entry.precision,
                         "format": entry.format, "gate_backend": entry.gate_backend,
                         "tile": list(fixed), "phantom_gate": dataclasses.asdict(entry.gate),
                         "fp32_psnr": float(fp),
                         "exported_psnr": float(ex), "drop": float(fp - ex),
                         "passes_real": bool(fp - ex <= ALLOWED_DB),
                         "psnr_vs_fp32": float(np.mean([r["vs_fp32"] for r in rows])), "rows": rows})
            print(f"{device} {entry.precision}: fp32 {fp:.3f} exported {ex:.3f} dB "
                  f"(drop {fp - ex:+.3f}); vs fp32 {runs[-1]['psnr_vs_fp32']:.2f} dB", flush=True)
    headers = ["device", "precision", "format", "run on", "tile", "phantom gate drop dB",
               "real: fp32 dB", "real: exported dB", "real: drop dB", "exported vs fp32 dB", "real gate"]
    table = markdown_table(headers, [[r["device"], r["precision"], r["format"], r["gate_backend"],
                                      "x".join(map(str, r["tile"])), f"{r['phantom_gate']['drop']:+.3f}",
                                      f"{r['fp32_psnr']:.3f}", f"{r['exported_psnr']:.3f}",
                                      f"{r['drop']:+.3f}", f"{r['psnr_vs_fp32']:.2f}",
                                      "pass" if r["passes_real"] else "FAIL"] for r in runs])
    text = ("# denoise-oct as exported per device, on real B-scans\n\n"
            f"{len(scans)} real noisy Duke SD-OCT B-scans (900×450, one per subject) against the registered "
            "average; the bundle's fixed-size artifact runs them in tiles "
            "(`processing.restore(fixed=...)`), the fp32 reference is the plugin's any-size ONNX "
            f"(8-bit outputs both). Real gate: drop ≤ {ALLOWED_DB} dB (the export gate's rule).\n\n"
            f"Command: `python tools/bench_denoise_oct_export.py {' '.join(sys.argv[1:])}`\n\n{table}\n")
    write_report(args.out, "denoise-oct-export", {"scans": len(scans), "runs": runs}, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
