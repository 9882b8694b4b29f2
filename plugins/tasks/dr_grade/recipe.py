"""dr-grade training and evaluation (build host only; imports torch).

Variants, as in the fundus paper's Table 4 (network designs in ``model.py``):
  single-task        DR head only: L = L_dr
  multi-task         the paper's multi-task net, both heads on the pooled deep features:
                     L = L_dr + L_q (+ weight decay). This one ships.
  multi-task-guided  the same loss on the quality-guided design (quality head on the shallow
                     features, DR head reading the quality probabilities): tried, not better
                     on the phantoms (TRAINING.md), kept so the comparison can be re-run.
Images without a DR label that means anything (non-retinal captures) are left
out of L_dr; images without a quality label are left out of L_q.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgeret import metrics
from edgeret.build.reporting import confusion_png
from edgeret.build.training.arrays import load_arrays
from edgeret.build.training.loop import FitConfig, fit
from edgeret.build.training.shipping import ship
from edgeret.errors import EdgeretError
from edgeret.plugin.registrations import EvalRequest, TrainRequest
from edgeret.reports import markdown_table, write_report
from edgeret.runtime.task_inputs import POOR, quality_code

from . import WEIGHTS_DIR, task_plugin
from .model import DRGradeNet, Probabilities, load_net
from .processing import DR_LABELS, REFERABLE_FROM

VARIANTS = {  # name -> (learns quality too, network design)
    "single-task": (False, "shared"),
    "multi-task": (True, "shared"),
    "multi-task-guided": (True, "guided"),
}
DEFAULT_VARIANT = "multi-task"
EPOCHS, BATCH = 12, 16
PREPROCESS_VERSION = "contrast-v1"  # part of the array-cache key


def _labels_of(labels: dict[str, Any]) -> dict[str, int]:
    if "dr_grade" not in labels:
        raise EdgeretError("dr-grade needs DR grade labels (EyePACS 'level' or edgeret 'dr_grade')")
    nonretinal = int(labels.get("nonretinal", 0))
    return {"dr_grade": -1 if nonretinal else int(labels["dr_grade"]),
            "quality": quality_code(labels), "nonretinal": nonretinal}


def _flip(batch, generator):
    images, *rest = batch
    flip = torch.rand(len(images), generator=generator) < 0.5
    return [torch.where(flip[:, None, None, None], images.flip(3), images), *rest]


def train(request: TrainRequest) -> Path:
    if request.folds > 1 or request.more_data:  # real photographs (+ phantoms): real_recipe.py
        from .real_recipe import train as train_real

        return train_real(request)
    task = task_plugin()
    x, y = load_arrays(request.data_dir, task, _labels_of, cache_dir=request.out_dir / "cache",
                       progress=request.progress, extra_key=PREPROCESS_VERSION)
    dr = torch.from_numpy(y["dr_grade"].astype(np.int64))
    quality = torch.from_numpy(y["quality"].astype(np.int64))
    for name in [request.variant] if request.variant else list(VARIANTS):
        multi, design = VARIANTS[name]
        torch.manual_seed(request.seed)
        net = DRGradeNet(design=design, dme=False)  # phantoms carry no DME label

        def loss_fn(model, batch, multi=multi):
            images, dr_t, q_t = batch
            dr_logits, q_logits, *_ = model(images.float())
            loss = F.cross_entropy(dr_logits, dr_t, ignore_index=-1) if (dr_t >= 0).any() else 0.0
            if multi and (q_t >= 0).any():
                loss = loss + F.cross_entropy(q_logits, q_t, ignore_index=-1)
            return loss

        config = FitConfig(epochs=request.epochs or EPOCHS, batch_size=request.batch_size or BATCH,
                           seed=request.seed, threads=request.threads, progress=request.progress)
        fit(net, [torch.from_numpy(x), dr, quality], loss_fn, config,
            request.out_dir / "checkpoints" / f"{name}.ckpt", label=name, augment=_flip)
        meta = {"variant": name, "design": design, "epochs": config.epochs, "seed": request.seed,
                "train_images": len(x), "data": str(request.data_dir)}
        onnx_path = request.out_dir / "dr_grade.onnx" if name == DEFAULT_VARIANT else None
        ship(net, Probabilities(net), task, request.out_dir / f"{name}.pt", onnx_path, meta)
    return request.out_dir


@torch.no_grad()
def _predict(name: str, models_dir: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model = Probabilities(load_net(models_dir / f"{name}.pt", VARIANTS[name][1])).eval()
    drs, qs = [], []
    for i in range(0, len(x), 16):
        dr, q, *_ = model(torch.from_numpy(x[i : i + 16].astype(np.float32)))
        drs.append(dr.numpy())
        qs.append(q.numpy())
    return np.concatenate(drs), np.concatenate(qs)


def _onnx_predict(models_dir: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from edgeret_plugins.backends.onnxruntime_backend import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(models_dir / "dr_grade.onnx")
    outs = [runner.run({"image": xi[None].astype(np.float32)}) for xi in x]
    return (np.concatenate([o["dr_probs"] for o in outs]),
            np.concatenate([o["quality_probs"] for o in outs]))


def _kappa(truth: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    return metrics.quadratic_weighted_kappa(truth[mask], pred[mask], len(DR_LABELS)) \
        if mask.any() else float("nan")


def evaluate(request: EvalRequest) -> dict[str, Any]:
    from edgeret.build.data.datasets import is_real_layout

    if is_real_layout(request.data_dir):
        from .real_recipe import evaluate_real

        return evaluate_real(request)
    task = task_plugin()
    models_dir = request.models_dir or WEIGHTS_DIR
    x, y = load_arrays(request.data_dir, task, _labels_of, progress=request.progress)
    truth, q_truth = y["dr_grade"], y["quality"]
    graded = truth >= 0  # non-retinal captures have no DR grade
    good, poor = graded & (q_truth == 0), graded & (q_truth == POOR)
    rows, results = [], {}
    names = [DEFAULT_VARIANT] if request.backend == "onnxruntime" else \
        [n for n in VARIANTS if (models_dir / f"{n}.pt").exists()]
    for name in names:
        dr_probs, q_probs = (_onnx_predict(models_dir, x) if request.backend == "onnxruntime"
                             else _predict(name, models_dir, x))
        pred = dr_probs.argmax(axis=1)
        ref_truth = (truth[graded] >= REFERABLE_FROM).astype(int)
        ref_pred = (pred[graded] >= REFERABLE_FROM).astype(int)
        screen = metrics.binary_report(ref_truth, ref_pred)
        retake = q_probs.argmax(axis=1) == POOR
        entry = {
            "kappa": _kappa(truth, pred, graded),
            "kappa_good": _kappa(truth, pred, good),
            "kappa_poor": _kappa(truth, pred, poor),
            "kappa_gradable_by_model": _kappa(truth, pred, graded & ~retake),
            "accuracy": metrics.accuracy(truth[graded], pred[graded]),
            "referable_sensitivity": screen["sensitivity"],
            "referable_specificity": screen["specificity"],
            "retake_rate_on_poor": float(retake[q_truth == POOR].mean()) if (q_truth == POOR).any()
            else float("nan"),
            "retake_rate_on_good": float(retake[q_truth == 0].mean()) if (q_truth == 0).any()
            else float("nan"),
        }
        matrix = metrics.confusion_matrix(truth[graded], pred[graded], len(DR_LABELS))
        results[name] = {**entry, "confusion": matrix.tolist()}
        rows.append((name, entry["kappa"], entry["kappa_good"], entry["kappa_poor"],
                     entry["kappa_gradable_by_model"], entry["referable_sensitivity"],
                     entry["referable_specificity"], entry["retake_rate_on_poor"]))
        confusion_png(matrix, [str(i) for i in range(len(DR_LABELS))],
                      request.out_dir / f"dr-grade-confusion-{name}.png",
                      f"dr-grade {name} ({request.backend})")
    headers = ("method", "kappa", "kappa good", "kappa poor", "kappa (model says gradable)",
               "referable sens.", "referable spec.", "poor -> retake")
    text = (f"# dr-grade on {request.data_dir} ({int(graded.sum())} graded images, "
            f"backend {request.backend})\n\nQuadratic weighted kappa (paper's Table 4; paper "
            "multi-task 0.745 overall). Target kappa >= 0.80 with multi-task >= single-task. "
            "Referable = ICDR grade >= 2.\n\n" + markdown_table(headers, rows))
    summary = {"task": task.name, "data": str(request.data_dir), "backend": request.backend,
               "variants": results}
    write_report(request.out_dir, "dr-grade-eval", summary, text)
    print(text)
    return summary
