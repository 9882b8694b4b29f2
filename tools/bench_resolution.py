"""Are the grading tasks resolution-independent? Real images at 0.5x to 4x of the model's input size.

    python tools/bench_resolution.py [--real ../shared/data/real]

Each real image is resampled (INTER_AREA down, INTER_CUBIC up) so that its longer side is 0.5, 1,
2 and 4 times the task's input size, then graded by the shipped runtime exactly as `edgeret run`
does. Reported per scale: how often the decision (gradable for quality tasks; retake / referable for
dr-grade) equals the decision on the image at its native size, and the mean change of the score.
Photographs: `fundus-photos/` (CHASE_DB1, never used in training); B-scans: `oct-denoise/` noisy
scans (Duke Bioptigen, never used in quality-oct training). Writes benchmarks/resolution.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCALES = (0.5, 1.0, 2.0, 4.0)


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    f = side / max(h, w)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)


def _decision(task: str, result: dict) -> tuple[str, float]:
    if task == "dr-grade":
        return (result["result"] if result["referable"] is None else f"referable={result['referable']}",
                float(result.get("p_quality_poor", 0.0)))
    return str(result["gradable"]), float(result.get("p_poor", 0.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data" / "real")
    args = parser.parse_args(argv)

    from edgeret.images.read_write import read_image
    from edgeret.plugin.host import get_host
    from edgeret.reports import markdown_table
    from edgeret.runtime.task_session import TaskSession

    host = get_host()
    backend = host.backend("onnxruntime")
    sets = {"quality-fundus": sorted((args.real / "fundus-photos").glob("*.jpg")),
            "dr-grade": sorted((args.real / "fundus-photos").glob("*.jpg")),
            "quality-oct": sorted((args.real / "oct-denoise").glob("*/noisy*.png"))}
    rows, summary = [], {}
    for name, files in sets.items():
        if not files:
            print(f"{name}: no real images under {args.real}; skipped")
            continue
        task = host.task(name)
        session = TaskSession(task, backend)
        side = max(int(d) for d in task.inputs[0].shape[2:])
        kind = task.image_kind
        native = [session.predict(read_image(f, expect=kind)) for f in files]
        base = [_decision(name, r) for r in native]
        for scale in SCALES:
            out = [_decision(name, session.predict(_resized(read_image(f, expect=kind), int(side * scale))))
                   for f in files]
            same = float(np.mean([a[0] == b[0] for a, b in zip(out, base, strict=True)]))
            change = float(np.mean([abs(a[1] - b[1]) for a, b in zip(out, base, strict=True)]))
            summary.setdefault(name, {})[str(scale)] = {
                "same_decision": round(same, 4), "mean_score_change": round(change, 4), "n": len(files)}
            rows.append([name, f"{scale}x ({int(side * scale)} px)", len(files), f"{100 * same:.1f} %",
                         f"{change:.3f}"])
            print(rows[-1], flush=True)
    out_dir = REPO / "benchmarks"
    (out_dir / "resolution.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "resolution.md").write_text(
        "# Grading at other resolutions (real images)\n\n`python tools/bench_resolution.py`: each real image "
        "resampled so its longer side is 0.5-4x the task's input size, graded by the shipped runtime; "
        "agreement with the decision at native size (photographs 999x960, CHASE_DB1; B-scans 900x450, Duke "
        "Bioptigen; neither used in training).\n\n"
        + markdown_table(["task", "longer side", "images", "same decision as native", "mean |score change|"],
                         rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
