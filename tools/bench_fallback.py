"""How often the camera sends JPEG XL instead of the learned codec, on real images (issue 22, item 3).

    python tools/bench_fallback.py [--limit 30] [--threads 2] [--out benchmarks]
    # or one set per process, then merged:
    python tools/bench_fallback.py --sets oct --rows /tmp/oct.json   (likewise for the other sets)
    python tools/bench_fallback.py --merge /tmp/oct.json /tmp/dr.json /tmp/chase.json
    # device time measured alone on an idle machine (one process, one thread), reported beside it:
    python tools/bench_fallback.py --limit 10 --threads 1 --rates fundus-factorized-q4 fundus-factorized-q6 \
        oct-factorized-q1 oct-factorized-q3 --rows /tmp/quiet.json
    python tools/bench_fallback.py --merge ... --timing /tmp/quiet.json

For every real development image and every rate point of the shipped factorized
codec, the camera's own decision runs (:func:`edgeret.codec.choice.choose`, as
`edgeret agent` and `edgeret encode` call it): the learned stream at that rate
(``--scale auto``, as the agent codes a capture graded good), JPEG XL fitted to
at most its bytes, both decoded and scored against the original. Reported per
set and rate point: how often JPEG XL is sent, the mean MS-SSIM / PSNR of what is
sent, of the learned stream alone and of JPEG XL alone at the same bytes, the
number of captures sent worse than JPEG XL would give (MS-SSIM; the target is 0)
and the device time the decision costs. Writes benchmarks/codec-fallback.{json,md}.

Sets (``../shared/data/real``, see its README): CHASE_DB1 colour photographs
(all 28), the first ``--limit`` clinical DR photographs and the first ``--limit``
macular B-scans (RGB exports of grey scans, read as grey). Nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real"
SETS = {  # name -> (folder, modality, read_image expect)
    "fundus-photos (CHASE_DB1)": ("fundus-photos", "fundus", "color"),
    "fundus-dr": ("fundus-dr/images", "fundus", "color"),
    "oct": ("oct/images", "oct", "gray"),
}
SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}


def images_of(folder: Path, limit: int | None) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    return paths[:limit] if limit else paths


def reference_jxl(image, modality: str, budget: int, effort: int) -> dict | None:
    """An independent JPEG XL at the same bytes: libjxl at a higher effort, a finer search (16 encodes)."""
    from edgeret.codec.choice import scores
    from edgeret.codec.classical import decode_classical, fit_jxl

    enc = fit_jxl(image, modality, budget, effort=effort, max_tries=16)
    if enc is None:
        return None
    return {"bytes": len(enc.stream), "effort": effort, "distance": round(enc.distance, 4),
            **scores(image, decode_classical(enc.header, enc.payload))}


def run(limit: int, threads: int, sets: list[str], rates: list[str] | None, rows_path: Path | None,
        reference_effort: int | None = None) -> list:
    from edgeret.codec.choice import choose
    from edgeret.codec.session import CodecCatalog, CodecSession
    from edgeret.images.read_write import read_image
    from edgeret.plugin.host import get_host

    host = get_host()
    session = CodecSession(CodecCatalog.of_plugin(host), host.backend("onnxruntime"), threads=threads)
    rows = []
    for name in sets:
        folder, modality, expect = SETS[name]
        model = session.catalog.models[f"{modality}-factorized"]
        session._runner(model.encoder_path), session._runner(model.decoder_path)  # loads outside timing
        points = [r for r in sorted(model.rates, key=lambda r: r.nominal_bpp) if not rates or r.id in rates]
        paths = images_of(DATA / folder, None if folder == "fundus-photos" else limit)
        for path in paths:
            image = read_image(path, expect=expect)
            for rate in points:
                encoded = session.encode(image, model, rate, source=str(path), scale="auto")
                choice = choose(image, encoded,
                                lambda e: session.decode(e.header, e.payloads, e.model, e.rate).image,
                                fallback="jxl", source=str(path))
                meta = choice.meta()
                rows.append({"set": name, "image": path.name, "size": list(image.shape[:2]),
                             "rate": rate.id, "scale": encoded.header.scale, "sent": meta["sent"],
                             "learned": meta["learned"], "jxl": meta["jxl"], "note": meta.get("note"),
                             "seconds": meta["seconds"]})
                if reference_effort:  # the image as read is the one the codecs coded (OCT read as grey)
                    rows[-1]["jxl_reference"] = reference_jxl(image, modality, rows[-1]["learned"]["bytes"],
                                                              reference_effort)
                r = rows[-1]
                print(f"{name} {path.name} {rate.id}: sent {r['sent']}, learned "
                      f"{r['learned'].get('ms_ssim')} / {r['learned'].get('psnr')} dB in "
                      f"{r['learned']['bytes']} B, jxl "
                      f"{(r['jxl'] or {}).get('ms_ssim')} in {(r['jxl'] or {}).get('bytes')} B", flush=True)
            if rows_path:  # after every image: a long run interrupted keeps what it measured
                rows_path.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["set"], r["rate"]) for r in rows):
        group = [r for r in rows if (r["set"], r["rate"]) == key]
        both = [r for r in group if r["jxl"]]  # JPEG XL fitted the budget: a real comparison
        sent = [r["jxl"] if r["sent"] == "jxl" else r["learned"] for r in both]

        def mean(values):
            values = [v for v in values if v is not None]
            return round(statistics.fmean(values), 5) if values else None

        worse = sum(1 for r, s in zip(both, sent, strict=True)
                    if s["ms_ssim"] is not None and s["ms_ssim"] < r["jxl"]["ms_ssim"])
        choice_s = [r["seconds"]["total"] - r["seconds"]["learned_encode"] for r in both]
        fill = [r["jxl"]["bytes"] / r["learned"]["bytes"] for r in both]
        out.append({
            "set": key[0], "rate": key[1], "captures": len(group),
            "jxl_fits": len(both), "jxl_sent": sum(1 for r in group if r["sent"] == "jxl"),
            "mean_bytes": round(statistics.fmean(r["learned"]["bytes"] for r in group)),
            "mean_bpp": round(statistics.fmean(r["learned"]["bytes"] * 8 / (r["size"][0] * r["size"][1])
                                               for r in group), 4),
            "ms_ssim": {"sent": mean(s["ms_ssim"] for s in sent),
                        "learned": mean(r["learned"]["ms_ssim"] for r in both),
                        "jxl": mean(r["jxl"]["ms_ssim"] for r in both)},
            "psnr": {"sent": mean(s["psnr"] for s in sent),
                     "learned": mean(r["learned"]["psnr"] for r in both),
                     "jxl": mean(r["jxl"]["psnr"] for r in both)},
            "sent_minus_jxl_ms_ssim_min": min((s["ms_ssim"] - r["jxl"]["ms_ssim"]
                                               for r, s in zip(both, sent, strict=True)), default=None),
            "sent_worse_than_jxl": worse,
            "learned_encode_s": round(statistics.fmean(r["seconds"]["learned_encode"] for r in group), 3),
            "choice_s": round(statistics.fmean(choice_s), 3) if choice_s else None,
            "jxl_fit_s": mean(r["seconds"].get("jxl_fit") for r in group),
            "learned_decode_s": mean(r["seconds"].get("learned_decode") for r in both),
            "jxl_encodes": mean(r["jxl"]["encodes"] for r in both),
            "jxl_bytes_over_learned": mean(fill),
        })
    return out


def timing(rows: list[dict]) -> list[dict]:
    """Mean device seconds per step, per set and rate point (rows measured on an idle machine)."""
    out = []
    for key in dict.fromkeys((r["set"], r["rate"]) for r in rows):
        group = [r for r in rows if (r["set"], r["rate"]) == key]
        steps = ("learned_encode", "jxl_fit", "learned_decode", "jxl_decode_and_score", "total")
        mpx = statistics.fmean(r["size"][0] * r["size"][1] for r in group) / 1e6
        means = {k: round(statistics.fmean(r["seconds"].get(k, 0.0) for r in group), 3) for k in steps}
        out.append({"set": key[0], "rate": key[1], "captures": len(group), "megapixels": round(mpx, 2),
                    **means})
    return out


def reference_check(rows: list[dict]) -> list[dict]:
    """Per set and rate: what was sent against an independently fitted JPEG XL (higher effort)."""
    out = []
    for key in dict.fromkeys((r["set"], r["rate"]) for r in rows):
        group = [r for r in rows if (r["set"], r["rate"]) == key and r.get("jxl_reference")]
        diffs = []
        for r in group:
            sent = r["jxl"] if r["sent"] == "jxl" else r["learned"]
            # None: the camera's JPEG XL did not fit, so nothing was scored on the device
            ref = r["jxl_reference"]["ms_ssim"]
            diffs.append(None if sent.get("ms_ssim") is None else sent["ms_ssim"] - ref)
        scored = [d for d in diffs if d is not None]
        out.append({"set": key[0], "rate": key[1], "reference_fits": len(group), "scored": len(scored),
                    "sent_worse": sum(1 for d in scored if d < 0),
                    "mean_diff": round(statistics.fmean(scored), 5) if scored else None,
                    "min_diff": round(min(scored), 5) if scored else None,
                    "unscored": len(group) - len(scored)})
    return out


def markdown(result: dict) -> str:
    s = result["summary"]
    rows = result["rows"]
    total_both = sum(x["jxl_fits"] for x in s)
    lines = [
        "# Never worse than JPEG XL: the camera's per-capture codec choice (real images)",
        "",
        f"`{result['command'].strip()}` (ONNX Runtime, {result['threads']} thread(s), {result['machine']}). "
        "For each real image and rate point of the shipped factorized codec the camera codes the learned "
        "stream (`--scale auto`), fits JPEG XL (libjxl via imagecodecs; effort 5 for photographs, 7 for "
        "B-scans) into at most the same "
        "bytes, decodes both and sends the one with the higher MS-SSIM (`edgeret.codec.choice`). "
        "*learned* / *JPEG XL*: each codec alone at those bytes; *sent*: what the camera sends. Means over "
        "the captures where JPEG XL fits the budget (*JXL fits*); where it does not (the lowest rates: "
        "JPEG XL at its coarsest setting is larger than the learned stream) the learned stream is sent, "
        "and no JPEG XL exists in those bytes to be worse than.",
        "",
        f"**Captures sent worse than JPEG XL at the same bytes (MS-SSIM): "
        f"{sum(x['sent_worse_than_jxl'] for x in s)} of {total_both}** (target 0). JPEG XL sent: "
        f"{sum(x['jxl_sent'] for x in s)} of {len(rows)} captures.",
        "",
        "| set | rate | mean bpp | captures | JXL fits | JXL sent | MS-SSIM sent / learned / JXL | "
        "PSNR dB sent / learned / JXL | sent worse than JXL | min sent − JXL MS-SSIM | JXL bytes / learned | "
        "learned encode s | choice s (JXL fit / learned decode) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v, nd):
        return "–" if v is None else f"{v:.{nd}f}"

    for x in s:
        m, p = x["ms_ssim"], x["psnr"]
        lines.append(
            f"| {x['set']} | {x['rate'].split('-')[-1]} | {x['mean_bpp']:.3f} | {x['captures']} | "
            f"{x['jxl_fits']} | "
            f"{x['jxl_sent']} ({100 * x['jxl_sent'] / x['captures']:.0f} %) | "
            f"{f(m['sent'], 4)} / {f(m['learned'], 4)} / {f(m['jxl'], 4)} | "
            f"{f(p['sent'], 2)} / {f(p['learned'], 2)} / {f(p['jxl'], 2)} | {x['sent_worse_than_jxl']} | "
            f"{f(x['sent_minus_jxl_ms_ssim_min'], 4)} | {f(x['jxl_bytes_over_learned'], 3)} | "
            f"{x['learned_encode_s']:.2f} | "
            f"{f(x['choice_s'], 2)} ({f(x['jxl_fit_s'], 2)} / {f(x['learned_decode_s'], 2)}) |")
    lines += [
        "",
        "*choice s*: device time the decision adds to a capture (fitting JPEG XL, decoding the learned "
        "stream with the hub's decoder graph, decoding JPEG XL and scoring both), on top of the learned "
        "encode. *JXL bytes / learned*: how full JPEG XL fills the budget; libjxl's size jumps near "
        "distance 20 (it switches to coarser coding), so at the low rates the nearest JPEG XL under the "
        "budget can be well below it. Per-capture rows: `codec-fallback.json`.",
        "",
    ]
    if result.get("reference"):
        lines += [
            "## Independent check: JPEG XL at effort 7, finer search",
            "",
            "The figures above compare with the camera's own JPEG XL candidate (at most 8 "
            "encodes). Here each capture's sent stream is compared with a JPEG XL made independently at "
            "libjxl's default effort 7, fitted to the same budget with up to 16 encodes "
            f"(`{result['reference_command']}`). *unscored*: the camera's JPEG XL did not fit, so "
            "the learned stream was sent without being scored, while effort 7 fits.",
            "",
            "| set | rate | effort-7 JXL fits | sent worse than it (MS-SSIM) | mean sent − it | "
            "min sent − it | unscored |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in result["reference"]:
            lines.append(f"| {x['set']} | {x['rate'].split('-')[-1]} | {x['reference_fits']} | "
                         f"{x['sent_worse']} of {x['scored']} | {f(x['mean_diff'], 4)} | "
                         f"{f(x['min_diff'], 4)} | {x['unscored']} |")
        lines.append("")
    if result.get("timing"):
        lines += [
            "## Device time, measured alone",
            "",
            "The times above were taken with two or three benchmark processes sharing two cores. Measured "
            "again with one process and one thread on an otherwise idle machine (x86, ONNX Runtime fp32; "
            f"`{result['timing_command']}`), mean seconds per capture:",
            "",
            "| set | rate | captures | Mpx | learned encode | JXL fit | learned decode | "
            "JXL decode + scoring | total | added by the choice |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in result["timing"]:
            lines.append(f"| {t['set']} | {t['rate'].split('-')[-1]} | {t['captures']} | {t['megapixels']} | "
                         f"{t['learned_encode']:.2f} | {t['jxl_fit']:.2f} | {t['learned_decode']:.2f} | "
                         f"{t['jxl_decode_and_score']:.2f} | {t['total']:.2f} | "
                         f"{t['total'] - t['learned_encode']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=30, help="images per set (CHASE_DB1: all 28)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--rates", nargs="*", help="rate-point ids (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--rows", type=Path, help="write only the per-capture rows here (for --merge)")
    parser.add_argument("--merge", type=Path, nargs="+", help="report on rows files written with --rows")
    parser.add_argument("--reference-effort", type=int,
                        help="also fit an independent JPEG XL at this libjxl effort (e.g. 7) to every budget")
    parser.add_argument("--reference", type=Path,
                        help="with --merge: rows measured with --reference-effort, for the independent check")
    parser.add_argument("--timing", type=Path,
                        help="with --merge: rows measured alone, for the device-time table")
    args = parser.parse_args()
    if args.merge:
        rows = [r for path in args.merge for r in json.loads(path.read_text())]
        command = ("python tools/bench_fallback.py --threads 1 --sets SET --rows SET.json (one process per "
                   "set, the three side by side), then --merge")
    else:
        if not DATA.is_dir():
            print(f"no real data at {DATA}", file=sys.stderr)
            return 2
        rows = run(args.limit, args.threads, args.sets, args.rates, args.rows, args.reference_effort)
        if args.rows:
            return 0
        command = "python tools/bench_fallback.py " + " ".join(sys.argv[1:])
    result = {"summary": summarise(rows), "machine": platform.platform(), "threads": args.threads,
              "command": command, "rows": rows}
    if args.reference:
        result["reference"] = reference_check(json.loads(args.reference.read_text()))
        result["reference_command"] = ("python tools/bench_fallback.py --threads 1 --reference-effort 7 "
                                       "--rates fundus-factorized-q4 fundus-factorized-q6 oct-factorized-q1 "
                                       "oct-factorized-q3")
    if args.timing:
        result["timing"] = timing(json.loads(args.timing.read_text()))
        result["timing_command"] = ("python tools/bench_fallback.py --limit 10 --threads 1 --rates "
                                    "fundus-factorized-q4 fundus-factorized-q6 oct-factorized-q1 "
                                    "oct-factorized-q3")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "codec-fallback.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "codec-fallback.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
