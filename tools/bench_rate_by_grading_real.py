"""Which upload rate keeps the hub's grading of real captures? Agreement decoded vs original, per rate point.

    python tools/bench_rate_by_grading_real.py [--n 90] [--folds 3] [--data ../shared/data/real]

The hub grades what it decoded, so the default upload rate of each learned codec is the
lowest rate point at which the hub's decisions on decoded real captures equal its decisions
on the originals for >= 98 % of captures (issue 22's rule): fundus photographs (`fundus-dr`,
1000x1000 clinical photographs): retake (ungradable) and referable DR; OCT B-scans (`oct`,
1408x573 clinical exports): gradable. Each capture is coded as `edgeret agent` codes it (a
capture the camera's own quality model grades good may be halved), decoded as `edgeret serve`
decodes it (ONNX Runtime) and graded by the hub's task. Captures are drawn by patient (every
image of a drawn patient); the rule is also applied within each of `--folds` patient folds to
show whether the pick is stable. Each rate point is judged twice: the learned stream alone, and
what `edgeret agent` sends by default (`--fallback jxl`: JPEG XL in at most the same bytes when its
MS-SSIM is higher), which is what the hub then grades.

Writes benchmarks/rate-by-grading-real.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import time
from pathlib import Path

import numpy as np

from edgeret.camera.capture import scale_for_quality
from edgeret.codec.choice import choose
from edgeret.codec.ert.container import encode_stream
from edgeret.codec.session import CodecCatalog, CodecSession
from edgeret.images.read_write import read_image
from edgeret.link.protocol import DEVICE_TASKS, HUB_TASKS
from edgeret.plugin.host import get_host
from edgeret.reports import markdown_table, write_report
from edgeret.runtime.grading import Grader

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = 0.98
WHAT = {"decisions": "learned stream alone", "sent_decisions": "as sent (JPEG XL fallback)"}
SETS = {"fundus": "fundus-dr", "oct": "oct"}


def decisions(modality: str, graded: dict) -> dict[str, bool]:
    """The hub's decisions a programme acts on."""
    if modality == "fundus":
        retake = graded.get("quality") == "poor"
        return {"retake": retake, "referable": bool(graded.get("referable")) and not retake}
    return {"gradable": graded.get("quality") != "poor"}


def patients_drawn(rows: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    """Whole patients in a fixed pseudo-random order until about n images."""
    by_patient: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_patient.setdefault(r["patient"], []).append(r)
    order = sorted(by_patient, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    drawn: list[dict[str, str]] = []
    for p in order:
        if len(drawn) >= n:
            break
        drawn += by_patient[p]
    return drawn


def fold_of(patient: str, folds: int) -> int:
    return int(hashlib.sha256(f"fold:{patient}".encode()).hexdigest(), 16) % folds


def rate_points(codec: CodecSession, modality: str) -> list:
    model = next(m for m in codec.catalog.models.values()
                 if m.modality == modality and m.variant == "factorized")
    return model, sorted(model.rates, key=lambda r: r.nominal_bpp)


def measure(modality: str, folder: Path, n: int, codec: CodecSession, hub: Grader,
            device: Grader, fallback: bool) -> list[dict]:
    with open(folder / "labels.csv", newline="") as f:
        rows = patients_drawn(list(csv.DictReader(f)), n)
    model, rates = rate_points(codec, modality)
    out = []
    for i, r in enumerate(rows):
        image = read_image(folder / r["file"])
        scale = scale_for_quality(device.grade(image, modality, r["file"]))
        row = {"file": r["file"], "patient": r["patient"], "pixels": int(image.shape[0] * image.shape[1]),
               "original": decisions(modality, hub.grade(image, modality, r["file"])), "rates": {}}
        for rate in rates:
            encoded = codec.encode(image, model, rate, scale=scale)
            data = encode_stream(encoded.header, encoded.payloads)
            decoded = codec.decode_bytes(data).image
            graded = hub.grade(decoded, modality, r["file"])
            entry = {"bytes": len(data), "decisions": decisions(modality, graded)}
            if fallback:  # what the agent sends by default, as the hub decodes it
                choice = choose(image, encoded, lambda _e, d=decoded: d, fallback="jxl", source=r["file"])
                sent = decoded
                if choice.sent == "jxl":
                    sent = codec.decode_bytes(encode_stream(choice.header, choice.payloads)).image
                    entry["sent_bytes"] = choice.jxl["bytes"]
                entry["sent"] = choice.sent
                entry["sent_decisions"] = decisions(modality, hub.grade(sent, modality, r["file"]))
            row["rates"][rate.id] = entry
        out.append(row)
        print(f"{modality} {i + 1}/{len(rows)} {r['file']}", flush=True)
    return out


def agreement(rows: list[dict], rate: str, field: str = "decisions") -> dict[str, float]:
    keys = rows[0]["original"].keys()
    return {k: float(np.mean([r["rates"][rate][field][k] == r["original"][k] for r in rows]))
            for k in keys}


def pick(rows: list[dict], rate_ids: list[str], field: str = "decisions") -> str | None:
    """The lowest rate point at which it and every higher one keep each decision of the original on
    >= AGREEMENT of captures (agreement is not monotone in the rate: a low point can agree by chance).
    None: not even the highest rate point does."""
    if not rows:
        return None
    chosen = None
    for rate in reversed(rate_ids):  # highest first
        if min(agreement(rows, rate, field).values()) < AGREEMENT:
            break
        chosen = rate
    return chosen


def summarise(modality: str, rows: list[dict], rate_ids: list[str], folds: int, default: str) -> dict:
    table = []
    for rate in rate_ids:
        bpp = float(np.mean([r["rates"][rate]["bytes"] * 8 / r["pixels"] for r in rows]))
        agree = {k: round(v, 4) for k, v in agreement(rows, rate).items()}
        if "sent_decisions" in rows[0]["rates"][rate]:
            sent = agreement(rows, rate, "sent_decisions")
            agree.update({f"{k} (sent)": round(v, 4) for k, v in sent.items()})
            jxl = np.mean([r["rates"][rate]["sent"] == "jxl" for r in rows])
            agree["JPEG XL sent"] = round(float(jxl), 4)
        table.append({"rate": rate, "bpp": round(bpp, 4), **agree, "default_today": rate == default})
    fields = ["decisions"] + (["sent_decisions"] if "sent_decisions" in rows[0]["rates"][rate_ids[0]] else [])
    picks = {f: pick(rows, rate_ids, f) for f in fields}
    fold_picks = {f: [pick([r for r in rows if fold_of(r["patient"], folds) == k], rate_ids, f)
                      for k in range(folds)] for f in fields}
    return {"modality": modality, "captures": len(rows), "patients": len({r["patient"] for r in rows}),
            "table": table, "pick": picks, "fold_picks": fold_picks, "default_today": default}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/real")
    parser.add_argument("--n", type=int, default=90, help="captures per modality (whole patients)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--no-fallback", action="store_true", help="the learned streams only")
    args = parser.parse_args()
    host = get_host()
    backend = host.backend("onnxruntime")
    codec = CodecSession(CodecCatalog.of_plugin(host), backend, threads=1)
    hub, device = Grader(host, backend, HUB_TASKS, threads=1), Grader(host, backend, DEVICE_TASKS, threads=1)
    started = time.perf_counter()
    report = {"command": f"python tools/bench_rate_by_grading_real.py --n {args.n} --folds {args.folds}",
              "rule": f"lowest rate point whose every hub decision on decoded captures equals the "
                      f"decision on the original for >= {AGREEMENT:.0%} of captures, and so does every "
                      "higher rate point", "modalities": {}}
    lines = [f"# Upload rate by grading agreement, real captures\n\n`{report['command']}`\n\n"
             f"{report['rule']}. Agreement = share of captures whose decision on the decoded image equals "
             "that on the original.\n"]
    for modality, name in SETS.items():
        model, rates = rate_points(codec, modality)
        rows = measure(modality, args.data / name, args.n, codec, hub, device, not args.no_fallback)
        summary = summarise(modality, rows, [r.id for r in rates], args.folds, model.default_point().id)
        report["modalities"][modality] = {**summary, "captures_detail": rows}
        keys = [k for k in summary["table"][0] if k not in ("rate", "bpp", "default_today")]
        head = f"{name}, {summary['captures']} captures of {summary['patients']} patients"
        cells = [[t["rate"], t["bpp"], *[t[k] for k in keys], "yes" if t["default_today"] else ""]
                 for t in summary["table"]]
        headers = ["rate", "bpp", *keys, "default today"]
        lines += [f"\n## {modality}: {head}\n", markdown_table(headers, cells),
                  "".join(f"\nPick, {WHAT[f]}: **{summary['pick'][f]}**; per patient fold: "
                          f"{summary['fold_picks'][f]}.\n" for f in summary["pick"]),
                  f"\nDefault today: {summary['default_today']}.\n"]
    report["seconds"] = round(time.perf_counter() - started, 1)
    for path in write_report(args.out, "rate-by-grading-real", report, "".join(lines)):
        print(path)
    print("".join(lines))


if __name__ == "__main__":
    main()
