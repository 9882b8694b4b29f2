"""Export, verify and benchmark the bundles for the four reference devices; write benchmarks/.

    python tools/bench_bundles.py [--bundles out/bundles] [--heldout 200] [--calib-size 128]
                                  [--runs 100] [--threads 1] [--tasks quality-oct ...]
                                  [--compare-tasks quality-oct ...] [--gates-only]

With ``--tasks``, the gates table keeps the other tasks' rows from the last report
(``benchmarks/export-gates.json``), so one retrained model can be re-gated alone.

Runs, with the real CLI:

1. ``edgeret export --device D`` for x86-cpu (``--precision int8``), intel-x86,
   raspberry-pi-5 and jetson (every task with trained weights, or ``--tasks``);
2. ``edgeret verify`` on each (the Jetson's ONNX is checked on ONNX Runtime here);
3. ``edgeret bench`` on the three CPU bundles and ``edgeret bench --compare``
   on the x86 bundle (fp32 torch, ONNX Runtime, OpenVINO, LiteRT fp32/int8);
4. ``benchmarks/export-gates.{json,md}``: every task's gate figures per device
   and the INT8 vs fp32 speed-ups from the comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICES = {"x86-cpu": ["--precision", "int8"], "intel-x86": [], "raspberry-pi-5": [], "jetson": []}
VERIFY_HERE = ("x86-cpu", "intel-x86", "raspberry-pi-5", "jetson")
BENCH_HERE = ("x86-cpu", "intel-x86", "raspberry-pi-5")
DEVICE_NAMES = ("x86-cpu", "intel-x86", "raspberry-pi-5", "jetson-orin-nano")  # as the manifests name them


def edgeret(*args: str) -> None:
    print("$ edgeret " + " ".join(args), flush=True)
    proc = subprocess.run([sys.executable, "-m", "edgeret", *args], cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"edgeret {args[0]} failed (exit {proc.returncode})")


def merged_rows(previous_report: Path, fresh: list[dict], tasks: set[str]) -> list[dict]:
    """This run's gate rows for ``tasks`` plus the last report's rows for every other task,
    in device order, then task name."""
    kept = []
    if previous_report.exists():
        kept = [g for g in json.loads(previous_report.read_text())["gates"] if g["task"] not in tasks]
    order = {device: i for i, device in enumerate(DEVICE_NAMES)}
    return sorted(kept + fresh, key=lambda g: (order.get(g["device"], len(order)), g["task"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=Path, default=ROOT / "out" / "bundles")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--heldout", default="200")
    parser.add_argument("--calib-size", default="128")
    parser.add_argument("--runs", default="100")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--tasks", nargs="+")
    parser.add_argument("--compare-tasks", nargs="+", help="tasks for bench --compare (default: all)")
    parser.add_argument("--gates-only", action="store_true",
                        help="export and verify only; keep the speed figures of the last full run "
                             "(bundle-bench-*, bundle-compare-x86-cpu.json)")
    args = parser.parse_args()
    tasks = ["--tasks", *args.tasks] if args.tasks else []

    for device, extra in DEVICES.items():
        edgeret("export", "--device", device, *extra, *tasks, "--heldout", args.heldout,
                "--calib-size", args.calib_size, "-o", str(args.bundles / device), "--force", "--quiet")
    for device in VERIFY_HERE:
        edgeret("verify", str(args.bundles / device))
    for device in BENCH_HERE if not args.gates_only else ():
        edgeret("bench", str(args.bundles / device), "--runs", args.runs, "--threads", args.threads,
                "--out", str(args.out), "--quiet")
    compare_tasks = ["--tasks", *args.compare_tasks] if args.compare_tasks else []
    if not args.gates_only:
        edgeret("bench", str(args.bundles / "x86-cpu"), *compare_tasks, "--compare", "--runs", args.runs,
                "--threads", args.threads, "--heldout", args.heldout, "--calib-size", args.calib_size,
                "--out", str(args.out), "--quiet")

    gates = []
    for device in DEVICES:
        manifest = json.loads((args.bundles / device / "edgeret.json").read_text())
        for task, entry in manifest["tasks"].items():
            gate = entry["gate"]
            gates.append({"device": manifest["device"]["name"], "task": task, "format": entry["format"],
                          "precision": entry["precision"], "target": entry["target_backend"],
                          "gated_on": entry["gate_backend"], "kind": gate.get("kind"),
                          "metric": gate["metric"], "n": gate["n"],
                          "fp32": gate["fp32"], "exported": gate["exported"], "drop": gate["drop"],
                          "allowed_drop": gate.get("allowed_drop"), "passed": gate["passed"],
                          "agreement_with_fp32": gate.get("agreement_with_fp32"),
                          "tried": [a["precision"] for a in gate["attempts"]],
                          "size_kb": round(entry["size_bytes"] / 1024)})
    if args.tasks:  # a partial run: keep the other tasks' rows from the last report
        gates = merged_rows(args.out / "export-gates.json", gates, set(args.tasks))
    compare = json.loads((args.out / "bundle-compare-x86-cpu.json").read_text())
    speedups = [{"task": r["task"], "runtime": r["backend"], "int8_speedup": r["speedup_vs_fp32"],
                 "int8_median_ms": r["latency_ms_median"]}
                for r in compare["rows"] if r.get("speedup_vs_fp32")]
    report = {"gates": gates, "int8_vs_fp32": speedups, "machine": compare["machine"],
              "threads": compare["threads"], "runs": compare["runs"], "rounds": compare.get("rounds", 1)}
    (args.out / "export-gates.json").write_text(json.dumps(report, indent=2) + "\n")

    lines = ["# Export accuracy gates and INT8 speed-ups", "",
             "Written by `python tools/bench_bundles.py`. Gate: the task's metric on a held-out set of "
             "synthetic phantoms (seed range no training or calibration set uses), fp32 torch vs the "
             "exported artifact; classifiers may drop at most 0.5 points, image tasks 0.2 dB PSNR "
             "(denoise: vs the clean image; codec: the round trip through the .ert stream and the hub "
             "decoder vs the original; sr: PSNR of the exported output vs fp32's, at least 30 dB). The "
             "Jetson's ONNX is gated on ONNX Runtime CPU here (fp16: an fp16 copy of the ONNX).", "",
             "| device | task | artifact | gated on | metric | n | fp32 | exported | drop | gate | "
             "same class | tried | KB |", "|" + "---|" * 13]
    def num(value, fmt: str = ".2f") -> str:  # fidelity gates have no fp32 figure or drop
        return "-" if value is None else format(value, fmt)

    for g in gates:
        same = f"{g['agreement_with_fp32']:.1f}%" if g["kind"] == "class" else "-"
        lines.append(f"| {g['device']} | {g['task']} | {g['format']} {g['precision']} | {g['gated_on']} | "
                     f"{g['metric']} | {g['n']} | {num(g['fp32'])} | {num(g['exported'])} | "
                     f"{num(g['drop'], '+.2f')} | {'pass' if g['passed'] else 'FAIL'} | {same} | "
                     f"{' -> '.join(g['tried'])} | {g['size_kb']} |")
    m = compare["machine"]
    if args.gates_only:
        lines += ["", "Gates refreshed with `--gates-only`; the speed-ups below are from the last full "
                      "run (`bundle-compare-x86-cpu.md`)."]
    lines += ["", f"## INT8 vs fp32 on this CPU ({m['cpu']}, {m['cores']} cores; {compare['threads']} "
                  f"thread(s), batch 1, best median of {compare.get('rounds', 1)} interleaved rounds of "
                  f"{compare['runs']} runs)", "",
              "| task | runtime | int8 median ms | int8 speed-up vs fp32 |", "|---|---|---|---|"]
    lines += [f"| {s['task']} | {s['runtime']} | {s['int8_median_ms']:.2f} | {s['int8_speedup']:.2f}x |"
              for s in speedups]
    lines += ["", "Full tables: `bundle-compare-x86-cpu.md` (all variants, memory, size, metric drop) and "
                  "`bundle-bench-<device>.md` (each bundle as shipped)."]
    (args.out / "export-gates.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'export-gates.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
