"""The codec benchmark's targets and its Markdown report (``benchmarks/codec.md``).

Split from ``bench_codec.py`` (which measures); this module only reads the results dict.
"""

from __future__ import annotations

from edgeret.build.rd_metrics import msssim_from_db, quality_at_cr
from edgeret.reports import markdown_table

TARGETS = {"oct_cr_at_0.99": 80.0, "oct_bd_j2k": -20.0, "fundus_bd_jpeg": -30.0, "fundus_bd_j2k": -10.0,
           "encoder_ms": 50.0}


def describe_cr(c: dict) -> str:
    if c["cr"] is not None:
        return f"{c['cr']:.1f}" + (" (lower bound: lowest setting already passes)"
                                   if c["how"] == "lower bound" else "")
    if "best_ms_ssim" in c:
        return f"never reached (best MS-SSIM {c['best_ms_ssim']:.4f}, at CR {c['best_cr']:.1f})"
    return "n/a"


def _bd(results, key, ours, anchor) -> dict:
    entry = results["sets"][key]["bd_rate"].get(f"ours {ours} vs {anchor}")
    return {"bd_rate": None, "reason": "no such curve"} if entry is None else entry["ms_ssim_db"]


def targets(results: dict) -> list[dict]:
    out = []

    def add(name, value, goal, lower_is_better, unit, why_none="not reached on the measured range",
            note=""):
        if value is None:
            out.append({"target": name, "status": "MISSED", "value": None, "goal": goal,
                        "detail": why_none + note})
            return
        met = value <= goal if lower_is_better else value >= goal
        margin = (goal - value) if lower_is_better else (value - goal)
        out.append({"target": name, "status": "met" if met else "MISSED", "value": value, "goal": goal,
                    "detail": f"{value:.1f}{unit} vs {'<=' if lower_is_better else '>='} {goal:g}{unit}, "
                              f"margin {margin:+.1f}{unit}" + note})

    def add_bd(name, bd, goal):
        if bd["bd_rate"] is None:
            add(name, None, goal, True, "%", why_none=f"BD-rate not computable: {bd.get('reason')}")
            return
        lo, hi = bd["overlap"]
        add(name, bd["bd_rate"], goal, True, "%",
            note=f"; integrated over MS-SSIM {msssim_from_db(lo):.4f}..{msssim_from_db(hi):.4f}, the "
                 "quality range both curves cover")

    oct_set = results["sets"]["oct"]
    cr = oct_set["cr_at_ms_ssim_0.99"]
    ours = {k: v for k, v in cr.items() if k.startswith("ours")}
    reached = [v["cr"] for v in ours.values() if v["cr"] is not None]
    best_q = max(ours.items(), key=lambda kv: kv[1].get("best_ms_ssim", -1.0))
    curve = oct_set["curves"][best_q[0]]["points"]
    at80 = quality_at_cr(curve, TARGETS["oct_cr_at_0.99"])
    gap = (f"; best of ours: MS-SSIM {best_q[1]['best_ms_ssim']:.4f} at CR {best_q[1]['best_cr']:.1f} "
           f"({best_q[0]})") if "best_ms_ssim" in best_q[1] else ""
    if at80 is not None:
        gap += f"; at CR 80 ours gives MS-SSIM {at80:.4f}"
    add("OCT: MS-SSIM >= 0.99 at compression ratio >= 80 (best of ours)", max(reached, default=None),
        TARGETS["oct_cr_at_0.99"], False, "", why_none="MS-SSIM 0.99 never reached at any rate point",
        note=gap)
    add_bd("OCT: BD-rate (MS-SSIM) vs JPEG 2000 <= -20%", _bd(results, "oct", "factorized", "JPEG 2000"),
           TARGETS["oct_bd_j2k"])
    for key, label in (("fundus", "synthetic fundus"), ("retina", "real fundus photo")):
        add_bd(f"{label}: BD-rate (MS-SSIM) vs JPEG <= -30%", _bd(results, key, "factorized", "JPEG"),
               TARGETS["fundus_bd_jpeg"])
        add_bd(f"{label}: BD-rate (MS-SSIM) vs JPEG 2000 <= -10%",
               _bd(results, key, "factorized", "JPEG 2000"), TARGETS["fundus_bd_j2k"])
    for name, t in results["timing_512"].items():
        if name.startswith("ours"):
            add(f"encoder {name.removeprefix('ours ')} 512x512 on ONNX Runtime, {t['threads']} thread(s), "
                "entropy coding included <= 50 ms (median)",
                t["encode_ms"], TARGETS["encoder_ms"], True, " ms")
            out[-1]["detail"] += (f"; fastest run {t['encode_ms_min']:.1f} ms; "
                                  f"{t['encode_cpu_ms_1thread']:.1f} ms CPU on one thread")
    return out


def _f(v, fmt="{:.2f}"):
    return "n/a" if v is None else fmt.format(v)


def report(results: dict) -> str:
    lines = ["# Learned codec: rate-distortion benchmark", "",
             "Written by `tools/bench_codec.py` (see its docstring for the protocol). "
             f"CPU: {results['cpus']} cores, shared; load average at start "
             f"{results['load_average_start'][0]:.1f}, at end {results['load_average_end'][0]:.1f} "
             f"(timings are medians on a loaded machine). Threads: {results['threads']}. "
             f"Command: `{results['command']}`.", "", "## Targets", ""]
    lines.append(markdown_table(["target", "status", "detail"],
                                [[t["target"], t["status"], t["detail"]] for t in results["targets"]]))
    for key, s in results["sets"].items():
        lines += ["", f"## {key}: {s['description']}", "", "Mean over the set per setting.", ""]
        rows = []
        for name, c in s["curves"].items():
            for p in c["points"]:
                rows.append([name, p["setting"], f"{p['bpp']:.4f}", f"{p['cr']:.1f}", f"{p['psnr']:.2f}",
                             f"{p['ms_ssim']:.4f}", f"{p['ms_ssim_min']:.4f}"])
        lines.append(markdown_table(["codec", "setting", "bpp", "CR", "PSNR dB", "MS-SSIM", "min MS-SSIM"],
                                    rows))
        lines += ["", "BD-rate of ours (negative = fewer bits at equal quality), with the quality interval "
                  "both curves cover (the only one integrated):", ""]
        brow = []

        def bd_cell(v, fmt):
            if v["bd_rate"] is None:
                return f"not computable: {v.get('reason')}"
            return f"{v['bd_rate']:+.1f}% over {fmt(v['overlap'][0])}..{fmt(v['overlap'][1])}"

        for k, v in s["bd_rate"].items():
            brow.append([k, bd_cell(v["ms_ssim_db"], lambda d: f"{msssim_from_db(d):.4f}"),
                         bd_cell(v["psnr"], lambda d: f"{d:.1f} dB")])
        lines.append(markdown_table(["ours vs", "BD-rate (MS-SSIM)", "BD-rate (PSNR)"], brow))
        lines += ["", "Compression ratio at which the mean MS-SSIM is still >= 0.99:", ""]
        lines.append(markdown_table(["codec", "CR at MS-SSIM 0.99"],
                                    [[k, describe_cr(v)] for k, v in s["cr_at_ms_ssim_0.99"].items()]))
        lines += ["", f"![RD {key}](codec_rd_{key}.png)"]
    lines += ["", "## Time per 512x512 image (ms, median / min)", ""]
    lines.append(markdown_table(
        ["codec", "image", "setting", "encode", "decode", "encode CPU ms, 1 ORT thread"],
        [[k, t["image"], t.get("rate", t.get("setting")), f"{t['encode_ms']:.1f} / {t['encode_ms_min']:.1f}",
          f"{t['decode_ms']:.1f} / {t['decode_ms_min']:.1f}", _f(t.get("encode_cpu_ms_1thread"), "{:.1f}")]
         for k, t in results["timing_512"].items()]))
    lines += ["", f"Encode/decode: wall-clock median / min with {results['threads']} thread(s) (ONNX Runtime "
              "intra-op for ours, `numthreads` for the classical codecs that take it) on the shared "
              "machine; ours includes quantization, entropy coding and the `.ert` bytes. The last column "
              "is the process CPU time of one encode with a single ORT thread, which the load on the "
              "machine affects much less than the wall-clock time."]
    return "\n".join(lines) + "\n"
