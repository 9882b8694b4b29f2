"""Does the hub grade a decoded capture as it would the original? DR and OCT quality per codec rate.

    python tools/bench_grading_after_codec.py [--fundus-data DIR] [--oct-data DIR] [--n 300]

The hub grades what it decoded, not what the camera saw, so a programme choosing
a rate needs to know what compression does to the grades. For each rate point of
the shipped factorized codecs, every held-out image is encoded, decoded (ONNX
Runtime, exactly as `edgeret agent` and `edgeret serve` do: a capture the device's own
quality model grades good may be coded at half resolution, others never) and graded again:

* fundus: `dr-grade` (quadratic weighted kappa against the truth on gradable
  images, referable sensitivity / specificity, retakes), and how often the grade,
  the referable decision and the retake decision equal those on the original;
* OCT: `quality-oct` (accuracy against the truth, agreement with the original).

Data: the held-out sets `tools/train_defaults.sh` makes (`fundus-dr-test`, seed
102; OCT seed 104); generated here with the same commands when missing. Writes
benchmarks/grading-after-codec.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from edgeret.camera.capture import scale_for_quality
from edgeret.cli import main as edgeret
from edgeret.codec.session import CodecCatalog, CodecSession
from edgeret.images.read_write import read_image
from edgeret.metrics import binary_report, quadratic_weighted_kappa
from edgeret.plugin.host import get_host
from edgeret.reports import markdown_table, write_report

ROOT = Path(__file__).resolve().parents[1]
REFERABLE_FROM, POOR = 2, 2
# The rule that sets each codec's default upload rate (declared before the q4 and q6 figures were seen):
# the lowest rate point whose decoded images the hub grades as it grades the originals -- every decision
# it reports agrees on >= 97 % of held-out images and kappa / accuracy is within 0.02 of the original's --
# and whose validation MS-SSIM is >= 0.97 (a clinician reads the image too). None qualifies: the highest.
RULE_SAME, RULE_DROP, RULE_MS_SSIM = 0.97, 0.02, 0.97


def ensure_data(folder: Path, modality: str) -> Path:
    if (folder / "labels.csv").exists():
        return folder
    argv = ["data", "synth", "--modality", modality, "--out", str(folder)]
    argv += (["--n", "600", "--seed", "102", "--quality-mix", "good=0.6,usable=0.2,poor=0.2",
              "--grade-mix", "0=0.3,1=0.15,2=0.2,3=0.15,4=0.2"] if modality == "fundus"
             else ["--n", "3000", "--seed", "104"])
    if edgeret(argv) != 0:
        raise SystemExit(f"could not generate {folder}")
    return folder


def labelled(folder: Path, n: int) -> list[dict[str, str]]:
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows[:n]


def run_task(session, image: np.ndarray) -> dict[str, np.ndarray]:
    task = session.task
    return session.runner.run(task.preprocess(image, task))


def rate_points(codec: CodecSession, modality: str) -> list:
    """Every rate point of the modality's factorized codec, lowest rate first."""
    model = next(m for m in codec.catalog.models.values()
                 if m.modality == modality and m.variant == "factorized")
    return [(model, rate) for rate in sorted(model.rates, key=lambda r: r.nominal_bpp)]


def codec_versions(codec: CodecSession, modality: str, image: np.ndarray, scale: str | int):
    """(rate id, bpp, decoded image) per rate point: the stream the agent sends, decoded as the hub does."""
    from edgeret.codec.ert.container import encode_stream

    for model, rate in rate_points(codec, modality):
        encoded = codec.encode(image, model, rate, scale=scale)
        data = encode_stream(encoded.header, encoded.payloads)
        decoded = codec.decode_bytes(data)
        yield rate.id, len(data) * 8 / (image.shape[0] * image.shape[1]), decoded.image


def predictions(session, codec: CodecSession, folder: Path, rows: list[dict[str, str]], modality: str,
                decide, device_grader) -> dict[str, dict[str, list]]:
    """version -> {decision name -> one value per image, "bpp" -> ...}; ``decide(outputs)`` -> decisions."""
    raw_bpp = 24.0 if modality == "fundus" else 8.0
    preds: dict[str, dict[str, list]] = {}
    for i, r in enumerate(rows):
        image = read_image(folder / r["image"])
        # the agent's rule: only a capture its own quality model graded good may be halved
        scale = scale_for_quality(device_grader.grade(image, modality, r["image"]))
        versions = [("original", raw_bpp, image), *codec_versions(codec, modality, image, scale)]
        for name, bpp, version in versions:
            p = preds.setdefault(name, {"bpp": []})
            p["bpp"].append(bpp)
            for key, value in decide(run_task(session, version)).items():
                p.setdefault(key, []).append(value)
        if (i + 1) % 50 == 0:
            print(f"{modality} {i + 1}/{len(rows)}", flush=True)
    return preds


def device_grader(host, backend):
    """The camera's own quality models (what decides whether the agent may halve a capture)."""
    from edgeret.link.protocol import DEVICE_TASKS
    from edgeret.runtime.grading import Grader

    return Grader(host, backend, DEVICE_TASKS, threads=1)


def fundus_rows(host, codec, backend, folder: Path, n: int, dr_model: Path | None = None) -> list[dict]:
    from edgeret.runtime.task_session import TaskSession

    session = TaskSession(host.task("dr-grade"), backend, model=dr_model, threads=1)
    rows = labelled(folder, n)
    truth = np.array([int(r["dr_grade"]) for r in rows])
    quality = np.array([int(r["quality"]) for r in rows])
    preds = predictions(session, codec, folder, rows, "fundus", lambda out: {
        "grade": int(np.argmax(out["dr_probs"])), "retake": int(np.argmax(out["quality_probs"])) == POOR},
        device_grader(host, backend))
    graded = truth >= 0
    base = {k: np.array(v) for k, v in preds["original"].items()}
    table = []
    for name, p in preds.items():
        grade, retake = np.array(p["grade"]), np.array(p["retake"])
        screen = binary_report((truth[graded] >= REFERABLE_FROM).astype(int),
                               (grade[graded] >= REFERABLE_FROM).astype(int))
        table.append({
            "version": name, "bpp": float(np.mean(p["bpp"])),
            "kappa": quadratic_weighted_kappa(truth[graded], grade[graded], 5),
            "referable_sensitivity": screen["sensitivity"], "referable_specificity": screen["specificity"],
            "retake_on_poor": float(retake[quality == POOR].mean()),
            "retake_on_good": float(retake[quality == 0].mean()),
            "same_grade": float((grade == base["grade"]).mean()),
            "same_referable": float(((grade >= REFERABLE_FROM) == (base["grade"] >= REFERABLE_FROM)).mean()),
            "same_retake": float((retake == base["retake"]).mean()),
        })
    return table


def oct_rows(host, codec, backend, folder: Path, n: int) -> list[dict]:
    from edgeret.runtime.task_session import TaskSession

    session = TaskSession(host.task("quality-oct"), backend, threads=1)
    rows = labelled(folder, n)
    truth = np.array([int(r["quality"]) for r in rows])
    preds = predictions(session, codec, folder, rows, "oct",
                        lambda out: {"grade": int(np.argmax(out["grade_probs"]))},
                        device_grader(host, backend))
    base = np.array(preds["original"]["grade"])
    return [{"version": name, "bpp": float(np.mean(p["bpp"])),
             "accuracy": float((np.array(p["grade"]) == truth).mean()),
             "same_grade": float((np.array(p["grade"]) == base).mean())} for name, p in preds.items()]


def rule_pick(rows: list[dict], score: str, decisions: tuple[str, ...], ms_ssim: dict[str, float]) -> str:
    """The default-rate rule above, applied to one modality's rows (ordered by rate)."""
    original = rows[0]
    coded = sorted(rows[1:], key=lambda r: r["bpp"])
    for r in coded:
        if (all(r[d] >= RULE_SAME for d in decisions) and r[score] >= original[score] - RULE_DROP
                and ms_ssim[r["version"]] >= RULE_MS_SSIM):
            return r["version"]
    return coded[-1]["version"]


def validation_ms_ssim(codec: CodecSession) -> dict[str, float]:
    manifest = json.loads((codec.catalog.folder / "codec_models.json").read_text())
    return {r["id"]: float(r["validation"]["ms_ssim"]) for m in manifest["models"] for r in m["rates"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fundus-data", type=Path, default=ROOT / "out/train/data/fundus-dr-test")
    parser.add_argument("--oct-data", type=Path, default=ROOT / "out/oct-test104")
    parser.add_argument("--n", type=int, default=300, help="images per modality (the first N)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--dr-model", type=Path, help="dr-grade ONNX to test (default: the shipped one)")
    parser.add_argument("--skip-oct", action="store_true", help="fundus / DR only")
    parser.add_argument("--skip-fundus", action="store_true", help="OCT only")
    parser.add_argument("--keep-fundus", action="store_true",
                        help="with --skip-fundus: keep the fundus rows of the report already in --out (when "
                             "only the OCT codec changed); the report says so")
    parser.add_argument("--codec-weights", type=Path,
                        help="a codec weights folder to judge (a candidate; default: the shipped codecs)")
    args = parser.parse_args()
    host = get_host()
    backend = host.backend("onnxruntime")
    catalog = CodecCatalog(args.codec_weights) if args.codec_weights else CodecCatalog.of_plugin(host)
    codec = CodecSession(catalog, backend, threads=1)
    start = time.perf_counter()
    command = (f"python tools/bench_grading_after_codec.py --n {args.n}"
               + (f" --dr-model {args.dr_model}" if args.dr_model else "")
               + (f" --codec-weights {args.codec_weights}" if args.codec_weights else "")
               + "".join(f" {flag}" for flag, on in (("--skip-fundus", args.skip_fundus),
                                                     ("--keep-fundus", args.keep_fundus),
                                                     ("--skip-oct", args.skip_oct)) if on))
    fundus_data = None if args.skip_fundus else ensure_data(args.fundus_data, "fundus")
    fundus = fundus_rows(host, codec, backend, fundus_data, args.n, args.dr_model) if fundus_data else []
    kept = ""
    if args.skip_fundus and args.keep_fundus:
        previous = json.loads((args.out / "grading-after-codec.json").read_text())
        earlier = (args.out / "grading-after-codec.md").read_text().split("`")[1]  # its command line
        fundus, kept = previous["fundus"], previous.get("fundus_measured_by", earlier)
    octs = [] if args.skip_oct else oct_rows(host, codec, backend, ensure_data(args.oct_data, "oct"), args.n)
    ms_ssim = validation_ms_ssim(codec)
    same = ("same_referable", "same_retake")
    picks = {"fundus": rule_pick(fundus, "kappa", same, ms_ssim) if fundus else None,
             "oct": rule_pick(octs, "accuracy", ("same_grade",), ms_ssim) if octs else None}
    pct = "{:.1%}".format
    md = ["# Grading after the learned codec: does the hub see what the camera saw?", "",
          f"`{command}`: the first {args.n} images of "
          f"{args.fundus_data.name} and {args.oct_data.name}, each encoded at every listed rate point, "
          "decoded and graded again on ONNX Runtime (as the agent and hub do). 'same' = the decision on "
          "the decoded image equals the one on the original. Synthetic phantoms: not clinical evidence.",
          "", "## Fundus: dr-grade", "",
          *([f"(Kept from the previous report, measured by {kept}: this run measured OCT only.)", ""]
            if kept else []),
          markdown_table(["version", "bpp", "kappa", "referable sens.", "referable spec.", "retake on poor",
                          "retake on good", "same grade", "same referable", "same retake"],
                         [[r["version"], f"{r['bpp']:.3f}", f"{r['kappa']:.3f}",
                           f"{r['referable_sensitivity']:.3f}", f"{r['referable_specificity']:.3f}",
                           pct(r["retake_on_poor"]), pct(r["retake_on_good"]), pct(r["same_grade"]),
                           pct(r["same_referable"]), pct(r["same_retake"])] for r in fundus]),
          "", "## OCT: quality-oct", "",
          markdown_table(["version", "bpp", "accuracy", "same grade"],
                         [[r["version"], f"{r['bpp']:.3f}", f"{r['accuracy']:.3f}", pct(r["same_grade"])]
                          for r in octs]),
          "", "## Default upload rate", "",
          f"Rule (declared before the q4 and q6 figures were seen): the lowest rate point at which every "
          f"decision the hub reports agrees with the original's on >= {RULE_SAME:.0%} of images, kappa / "
          f"accuracy is within {RULE_DROP} of the original's, and the codec's validation MS-SSIM is >= "
          f"{RULE_MS_SSIM}. Picks: fundus **{picks['fundus']}**, OCT **{picks['oct']}**.",
          "", f"{time.perf_counter() - start:.0f} s on one thread.", ""]
    data = {"n": args.n, "fundus": fundus, "oct": octs, "default_rate_picks": picks,
            "fundus_measured_by": kept or command}
    write_report(args.out, "grading-after-codec", data, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
