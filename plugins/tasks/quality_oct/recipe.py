"""quality-oct training and evaluation (build host only; imports torch).

Loss (the paper's Eq. 1): 0.3 * BCE(backbone sub-labels) + 0.3 * BCE(fusion
sub-labels) + 0.4 * CE(grade). A variant without a head drops that term (Mode-A
is CE only; Mode-B is 0.3 * BCE + 0.4 * CE). Sub-labels a dataset does not give
(good/usable/poor class folders) are masked out of the BCE terms, so such data
trains the grade only.

Evaluation prints the paper's Table 2 (AUC per sub-label and their mean,
"overall") and Table 3 (precision and recall per grade, their means, accuracy)
for every variant whose weights exist, plus grade accuracy on the images that
carry each sub-label, which compares all variants (Mode-A has no sigmoid head,
so its sub-label AUC is n/a, as in the paper's Mode-A).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgeret import metrics
from edgeret.build.reporting import confusion_png
from edgeret.build.training.arrays import load_arrays
from edgeret.build.training.loop import FitConfig, fit
from edgeret.build.training.shipping import ship, torch_outputs
from edgeret.errors import EdgeretError
from edgeret.plugin.registrations import EvalRequest, TrainRequest
from edgeret.reports import markdown_table, write_report

from . import WEIGHTS_DIR, task_plugin
from .model import ARCHITECTURES, DSFFNet, RuntimeOutputs, StackedOutputs
from .processing import LABELS, SUBLABELS, grade_code, sublabel_codes

LOSS_WEIGHTS = {"backbone": 0.3, "fusion": 0.3, "grade": 0.4}  # w_B, w_F, w_P


@dataclass(frozen=True)
class Variant:
    paper_name: str


VARIANTS = {
    "mode-a": Variant("Mode-A ResNetLite (softmax)"),
    "mode-b": Variant("Mode-B ResNetLite (softmax + sigmoid)"),
    "dsff-noatt": Variant("DSFF-Net (no attention)"),
    "dsff": Variant("DSFF-Net"),
}
DEFAULT_VARIANT = "dsff"
EPOCHS, BATCH = 8, 32
TARGET_ACCURACY, TARGET_AUC = 0.975, 0.99
PAPER = "Paper (DSFF-Net, 3133 real Optovue test B-scans): accuracy 0.9746, overall AUC 0.9919."


def _labels_of(labels: dict[str, Any]) -> dict[str, int]:
    return {"quality": grade_code(labels), **sublabel_codes(labels)}


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the known (>= 0) sub-label entries; 0 if none is known."""
    known = (targets >= 0).float()
    if not bool(known.any()):
        return logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits, targets.clamp(min=0).float(), reduction="none")
    return (loss * known).sum() / known.sum()


def dsff_loss(out: dict[str, torch.Tensor], grade: torch.Tensor,
              sublabels: torch.Tensor) -> torch.Tensor:
    """w_B * BCE(backbone) + w_F * BCE(fusion) + w_P * CE(grade), over the heads present."""
    total = LOSS_WEIGHTS["grade"] * F.cross_entropy(out["grade"], grade)
    for head in ("backbone", "fusion"):
        if head in out:
            total = total + LOSS_WEIGHTS[head] * masked_bce(out[head], sublabels)
    return total


def _flip(batch, generator):
    images, *rest = batch
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    return [images, *rest]


def _file_listing_key(data_dir: Path) -> str:
    """The cache key hashes labels CSVs only; class folders have none, so add the file list."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(data_dir).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(data_dir)}:{path.stat().st_size};".encode())
    return digest.hexdigest()[:16]


def _arrays(data_dir: Path, cache_dir: Path | None, progress: bool):
    task = task_plugin()
    x, y = load_arrays(data_dir, task, _labels_of, cache_dir=cache_dir, progress=progress,
                       extra_key=_file_listing_key(data_dir) if cache_dir else "")
    sublabels = np.stack([y[name] for name in SUBLABELS], axis=1).astype(np.int64)
    return x, y["quality"].astype(np.int64), sublabels


def train(request: TrainRequest) -> Path:
    if request.folds > 1 or request.more_data:  # real B-scans (+ phantoms): real_recipe.py
        from .real_recipe import train as train_real

        return train_real(request)
    task = task_plugin()
    if request.variant and request.variant not in VARIANTS:
        raise EdgeretError(f"unknown variant '{request.variant}'; known: {', '.join(VARIANTS)}")
    x, grades, sublabels = _arrays(request.data_dir, request.out_dir / "cache", request.progress)
    tensors = [torch.from_numpy(x), torch.from_numpy(grades), torch.from_numpy(sublabels)]
    known = float((sublabels >= 0).mean())
    for name in [request.variant] if request.variant else list(VARIANTS):
        torch.manual_seed(request.seed)
        net = DSFFNet(ARCHITECTURES[name])

        def loss_fn(model, batch):
            images, grade, subs = batch
            return dsff_loss(model(images.float()), grade, subs)

        config = FitConfig(epochs=request.epochs or EPOCHS, batch_size=request.batch_size or BATCH,
                           seed=request.seed, threads=request.threads, progress=request.progress)
        start = time.perf_counter()
        fit(net, tensors, loss_fn, config, request.out_dir / "checkpoints" / f"{name}.ckpt",
            label=name, augment=_flip)
        seconds = time.perf_counter() - start
        meta = {"variant": name, "model": VARIANTS[name].paper_name, "epochs": config.epochs,
                "batch_size": config.batch_size, "seed": request.seed, "threads": request.threads,
                "train_images": len(x), "data": str(request.data_dir),
                "sublabels_known": round(known, 4), "loss_weights": LOSS_WEIGHTS,
                "params": sum(p.numel() for p in net.parameters()),
                "train_seconds_this_run": round(seconds, 1)}
        shipped = name == DEFAULT_VARIANT
        ship(net, RuntimeOutputs(net) if shipped else net, task, request.out_dir / f"{name}.pt",
             request.out_dir / "quality_oct.onnx" if shipped else None, meta)
        print(f"{name}: {config.epochs} epochs on {len(x)} images in {seconds:.0f} s")
    return request.out_dir


def load_variant(name: str, models_dir: Path) -> DSFFNet:
    net = DSFFNet(ARCHITECTURES[name])
    net.load_state_dict(torch.load(models_dir / f"{name}.pt", weights_only=True))
    return net.eval()


def _onnx_stacked(path: Path, x: np.ndarray) -> np.ndarray:
    """Both outputs of the shipped ONNX model through ONNX Runtime, one image at a time."""
    from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(path)
    rows = []
    for image in x:
        out = runner.run({runner.input_names[0]: image[None].astype(np.float32)})
        rows.append(np.concatenate([out["grade_probs"], out["sublabel_probs"]], axis=1))
    return np.concatenate(rows)


def _na(value: float) -> Any:
    return "n/a" if value is None or math.isnan(value) else value


def _score(probs: np.ndarray, grades: np.ndarray, sublabels: np.ndarray) -> dict[str, Any]:
    pred = probs[:, : len(LABELS)].argmax(axis=1)
    matrix = metrics.confusion_matrix(grades, pred, len(LABELS))
    precision, recall = metrics.precision_recall(matrix)
    aucs = {}
    for j, name in enumerate(SUBLABELS):
        known = sublabels[:, j] >= 0
        scores = probs[known, len(LABELS) + j]
        aucs[name] = (float("nan") if np.isnan(scores).any()
                      else metrics.roc_auc(sublabels[known, j], scores))
    by_sublabel, logloss = {}, {}
    true_p = np.clip(probs[np.arange(len(grades)), grades], 1e-7, 1.0)
    for j, name in enumerate(SUBLABELS):
        rows = sublabels[:, j] == 1
        by_sublabel[name] = metrics.accuracy(grades[rows], pred[rows]) if rows.any() else float("nan")
        logloss[name] = float(-np.log(true_p[rows]).mean()) if rows.any() else float("nan")
    return {
        "auc": aucs,
        "auc_overall": float(np.mean(list(aucs.values()))),
        "precision": dict(zip(LABELS, precision.tolist(), strict=True)),
        "recall": dict(zip(LABELS, recall.tolist(), strict=True)),
        "precision_overall": float(np.nanmean(precision)),
        "recall_overall": float(np.nanmean(recall)),
        "accuracy": metrics.accuracy(grades, pred),
        "grade_accuracy_by_sublabel": by_sublabel,
        "grade_logloss_by_sublabel": logloss,
        "confusion": matrix.tolist(),
        "predictions": pred.tolist(),
    }


def _targets(results: dict[str, dict[str, Any]]) -> list[str]:
    dsff = results.get(DEFAULT_VARIANT)
    if dsff is None:
        return ["DSFF weights missing: targets not checked."]
    acc, auc = dsff["accuracy"], dsff["auc_overall"]
    lines = [f"- accuracy {acc:.4f} vs target {TARGET_ACCURACY}: "
             + ("met" if acc >= TARGET_ACCURACY else f"MISSED by {TARGET_ACCURACY - acc:.4f}")]
    if math.isnan(auc):
        lines.append("- overall AUC: n/a (the dataset gives no sub-labels)")
    else:
        lines.append(f"- overall AUC {auc:.4f} vs target {TARGET_AUC}: "
                     + ("met" if auc >= TARGET_AUC else f"MISSED by {TARGET_AUC - auc:.4f}"))
    mode_a = results.get("mode-a")
    if mode_a is not None:
        for name in ("deficiency", "slight_deficiency"):
            d, a = dsff["grade_accuracy_by_sublabel"][name], mode_a["grade_accuracy_by_sublabel"][name]
            if math.isnan(d) or math.isnan(a):
                continue
            verdict = "ahead" if d > a else ("level" if d == a else "BEHIND")
            dl, al = (r["grade_logloss_by_sublabel"][name] for r in (dsff, mode_a))
            lines.append(f"- grade accuracy on {name} images: DSFF {d:.4f} vs Mode-A {a:.4f} ({verdict}); "
                         f"log-loss DSFF {dl:.4f} vs Mode-A {al:.4f} "
                         f"({'lower' if dl < al else 'higher'})")
    return lines


def evaluate(request: EvalRequest) -> dict[str, Any]:
    from edgeret.build.data.datasets import is_real_layout

    if is_real_layout(request.data_dir):
        from .real_recipe import evaluate_real

        return evaluate_real(request)
    task = task_plugin()
    models_dir = request.models_dir or WEIGHTS_DIR
    x, grades, sublabels = _arrays(request.data_dir, None, request.progress)
    if request.backend == "onnxruntime":
        names = [DEFAULT_VARIANT] if (models_dir / "quality_oct.onnx").exists() else []
    else:
        names = [n for n in VARIANTS if (models_dir / f"{n}.pt").exists()]
    if not names:
        raise EdgeretError(f"no quality-oct weights in {models_dir} (expected {', '.join(VARIANTS)}.pt "
                           "or quality_oct.onnx); train them with `edgeret train quality-oct`")
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        if request.backend == "onnxruntime":
            probs = _onnx_stacked(models_dir / "quality_oct.onnx", x)
        else:
            probs = torch_outputs(StackedOutputs(load_variant(name, models_dir)), x)
        results[name] = _score(probs, grades, sublabels)
        confusion_png(np.asarray(results[name]["confusion"]), LABELS,
                      request.out_dir / f"quality-oct-confusion-{name}.png",
                      f"quality-oct {name} ({request.backend})")

    def title(name: str) -> str:
        return VARIANTS[name].paper_name

    auc_rows = [(title(n), *[_na(r["auc"][s]) for s in SUBLABELS], _na(r["auc_overall"]))
                for n, r in results.items()]
    grade_rows = [(title(n), *[v for g in ("poor", "usable", "good")
                               for v in (_na(r["precision"][g]), _na(r["recall"][g]))],
                   r["precision_overall"], r["recall_overall"], r["accuracy"])
                  for n, r in results.items()]
    sub_rows = [(title(n), *[_na(r["grade_accuracy_by_sublabel"][s]) for s in SUBLABELS],
                 *[_na(r["grade_logloss_by_sublabel"][s]) for s in SUBLABELS])
                for n, r in results.items()]
    counts = {g: int((grades == i).sum()) for i, g in enumerate(LABELS)}
    known = bool((sublabels >= 0).any())
    text = (
        f"# quality-oct on {request.data_dir} ({len(x)} images: "
        + ", ".join(f"{g} {c}" for g, c in counts.items())
        + f"; backend {request.backend})\n\n{PAPER}\n"
        f"Targets (synthetic held-out set): accuracy >= {TARGET_ACCURACY}, overall AUC >= {TARGET_AUC}, "
        "DSFF ahead of Mode-A on the deficiency labels.\n\n"
        "## Sub-label AUC (paper Table 2; overall = mean of the four)\n\n"
        + ("" if known else "The dataset gives grades only (class folders): sub-label AUC is n/a.\n\n")
        + "Mode-A has no sigmoid head (softmax only, as in the paper): its sub-label AUC is n/a.\n\n"
        + markdown_table(("model", *SUBLABELS, "overall"), auc_rows)
        + "\n## Grade precision / recall (paper Table 3)\n\n"
        + markdown_table(("model", "poor P", "poor R", "usable P", "usable R", "good P", "good R",
                          "overall P", "overall R", "ACC"), grade_rows)
        + "\n## Grade accuracy and log-loss on the images carrying each sub-label\n\n"
        "Compares every variant, Mode-A included. Log-loss = mean -ln p(true grade); lower is better "
        "and it still separates models when accuracy saturates.\n\n"
        + markdown_table(("model", *[f"acc {s}" for s in SUBLABELS],
                          *[f"log-loss {s}" for s in SUBLABELS]), sub_rows)
        + "\n## Targets (DSFF)\n\n" + "\n".join(_targets(results)) + "\n"
    )
    summary = {"task": task.name, "data": str(request.data_dir), "images": len(x),
               "grade_counts": counts, "backend": request.backend, "variants": results,
               "targets": {"accuracy": TARGET_ACCURACY, "auc_overall": TARGET_AUC}}
    write_report(request.out_dir, "quality-oct-eval", summary, text)
    print(text)
    return summary
