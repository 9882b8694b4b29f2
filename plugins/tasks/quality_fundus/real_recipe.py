"""quality-fundus trained and judged on real photographs (build host only; imports torch).

`edgeret train quality-fundus --data REAL [--data MORE ...] [--folds K]` runs this recipe whenever
more than one folder or ``--folds`` is given. Labels (``edgeret.build.training.real_fundus``): DRIMDB good
-> gradable, bad and outlier -> poor; clinical photographs with a DR/DME grade -> weakly gradable;
phantoms as labelled. Real photographs degraded the way cameras fail (``edgeret.build.training.degrade``)
are poor.

Real labels say gradable or not, never good vs usable, so the loss is binary on the model's three
outputs: -log p(poor) for poor, -log(p(good) + p(usable)) for gradable. Training starts from the
phantom-trained weights, whose good/usable split (and phantom accuracy) it keeps where the real data
is silent. Each batch draws from four pools at stated shares (SHARES): labelled real photographs,
weakly labelled clinical ones (loss weight WEAK_WEIGHT: some are dark or hazy), degraded real ones,
and phantoms (when a phantom folder is given). Augmentation: ``edgeret.build.training.real_batches``.

With ``--folds K``: patient-level folds (``edgeret.build.training.folds``); each fold's model is scored on
its held-out patients at EVAL_EPOCHS; the epoch count and the threshold on p(poor) are chosen by
rules fixed here (best mean of the three real figures over pooled out-of-fold predictions; for each
fold's reported figure the threshold is chosen on the *other* folds' predictions), so no figure is
tuned on the patients it reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from edgeret.build.training.folds import group_folds, mean_spread, rate, scored_epochs
from edgeret.build.training.real_batches import DEGRADED, binary_quality_loss, draw
from edgeret.build.training.real_fit import run_epoch, ship_real
from edgeret.build.training.real_fundus import FundusSet, load_fundus_sets
from edgeret.reports import markdown_table, write_report

from . import WEIGHTS_DIR, task_plugin
from .model import FundusQualityNet, ProbabilitiesOnly
from .processing import INPUT_SIZE

CROP = 320  # crops are read once at this size and resized to INPUT_SIZE per batch
SHARES = {"labelled": 0.3, "weak": 0.25, DEGRADED: 0.3, "phantom": 0.15}
WEAK_WEIGHT = 0.5
EPOCHS, BATCH, LR = 16, 24, 5e-4
EVAL_EPOCHS = (4, 8, 12, 16)
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
INIT = WEIGHTS_DIR / "weighted-center.pt"  # the phantom-trained model this recipe starts from


def _pools(fs: FundusSet, index: np.ndarray) -> dict[str, np.ndarray]:
    real = index[~fs.phantom[index]]
    pools = {
        "labelled": real[(fs.quality[real] >= 0) & ~fs.weak[real]],
        "weak": real[fs.weak[real]],
        DEGRADED: real[(fs.quality[real] != 2) & (fs.quality[real] >= 0)],
        "phantom": index[fs.phantom[index] & (fs.quality[index] >= 0)],
    }
    return {k: v for k, v in pools.items() if len(v)}


def _to_input(crop: np.ndarray) -> np.ndarray:
    """uint8/float CROP x CROP x 3 -> float32 3 x INPUT_SIZE x INPUT_SIZE in [0, 1]."""
    img = crop.astype(np.float32) / 255.0 if crop.dtype == np.uint8 else crop
    img = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def _batch(fs: FundusSet, pools: dict[str, np.ndarray], n: int, rng: np.random.Generator):
    drawn = draw(fs, pools, SHARES, n, rng)
    images = np.stack([_to_input(img) for _, _, img in drawn])
    poor = [1.0 if pool == DEGRADED else float(fs.quality[i] == 2) for i, pool, _ in drawn]
    weight = [WEAK_WEIGHT if pool == "weak" else 1.0 for _, pool, _ in drawn]
    return torch.from_numpy(images), torch.tensor(poor), torch.tensor(weight)


@torch.no_grad()
def p_poor(net: FundusQualityNet, fs: FundusSet, index: np.ndarray) -> np.ndarray:
    net.eval()
    out = []
    for start in range(0, len(index), 32):
        x = torch.from_numpy(np.stack([_to_input(fs.images[i]) for i in index[start:start + 32]]))
        out.append(torch.softmax(net(x)[0], dim=1)[:, 2].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _train(fs: FundusSet, index: np.ndarray, epochs: int, seed: int, eval_index: np.ndarray | None = None,
           log=print) -> tuple[FundusQualityNet, dict[int, np.ndarray]]:
    """Train on ``index``; with ``eval_index`` also return p(poor) on it at ``scored_epochs``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = FundusQualityNet()
    net.load_state_dict(torch.load(INIT, weights_only=True))
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    steps = max(1, len(index) // BATCH)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, EPOCHS) * steps)
    pools = _pools(fs, index)
    scores: dict[int, np.ndarray] = {}
    def next_loss() -> torch.Tensor:
        images, poor, weight = _batch(fs, pools, BATCH, rng)
        return binary_quality_loss(net(images)[0], poor, weight)

    for epoch in range(1, epochs + 1):
        loss, seconds = run_epoch(net, optimizer, scheduler, steps, next_loss)
        log(f"  epoch {epoch}/{epochs}: loss {loss:.4f} ({seconds:.0f} s)")
        if eval_index is not None and epoch in scored_epochs(EVAL_EPOCHS, epochs):
            scores[epoch] = p_poor(net, fs, eval_index)
    return net, scores


def _figures(fs: FundusSet, index: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """The issue's three real figures at one threshold (phantoms reported apart)."""
    rejected = scores >= threshold
    real = ~fs.phantom[index]
    labelled = real & ~fs.weak[index] & (fs.quality[index] >= 0)
    good = labelled & (fs.quality[index] != 2)
    bad = labelled & (fs.quality[index] == 2)
    clinical = real & fs.weak[index]
    return {"good_accepted": rate(~rejected[good]), "bad_rejected": rate(rejected[bad]),
            "clinical_gradable": rate(~rejected[clinical])}


def _objective(fig: dict[str, Any]) -> float:
    values = [fig[k]["rate"] for k in ("good_accepted", "bad_rejected", "clinical_gradable") if fig[k]["n"]]
    return float(np.mean(values)) if values else 0.0


def _best_threshold(fs: FundusSet, index: np.ndarray, scores: np.ndarray) -> float:
    return float(max(THRESHOLDS, key=lambda t: (_objective(_figures(fs, index, scores, t)), -abs(t - 0.5))))


def cross_validate(fs: FundusSet, k: int, seed: int, epochs: int = EPOCHS, log=print) -> dict[str, Any]:
    folds = group_folds(fs.groups, k, seed)
    scored = scored_epochs(EVAL_EPOCHS, epochs)
    oof = {e: np.zeros(len(fs)) for e in scored}
    for f, held in enumerate(folds):
        train = np.setdiff1d(np.arange(len(fs)), held)
        log(f"fold {f + 1}/{k}: {len(train)} training, {len(held)} held-out photographs")
        _, scores = _train(fs, train, epochs, seed + f, eval_index=held, log=log)
        for e, s in scores.items():
            oof[e][held] = s
    everyone = np.arange(len(fs))
    by_epoch = {e: _objective(_figures(fs, everyone, oof[e], _best_threshold(fs, everyone, oof[e])))
                for e in scored}
    epoch = max(scored, key=lambda e: (round(by_epoch[e], 3), -e))
    threshold = _best_threshold(fs, everyone, oof[epoch])
    per_fold = []
    for f, held in enumerate(folds):  # each fold judged at a threshold chosen without it
        rest = np.setdiff1d(everyone, held)
        t = _best_threshold(fs, rest, oof[epoch][rest])
        per_fold.append({"fold": f + 1, "threshold": t, **_figures(fs, held, oof[epoch][held], t)})
    nested = np.concatenate([oof[epoch][h] >= pf["threshold"] for h, pf in zip(folds, per_fold, strict=True)])
    order = np.concatenate(folds)
    pooled_nested = _figures(fs, order, np.where(nested, 1.0, 0.0), 0.5)
    return {"folds": k, "seed": seed, "epochs_scored": list(scored), "objective_by_epoch": by_epoch,
            "chosen_epochs": epoch, "chosen_threshold": threshold, "per_fold": per_fold,
            "pooled_nested": pooled_nested,
            "pooled_at_chosen_threshold": _figures(fs, everyone, oof[epoch], threshold),
            "spread": {key: mean_spread([pf[key]["rate"] for pf in per_fold])
                       for key in ("good_accepted", "bad_rejected", "clinical_gradable")},
            "oof_p_poor": {"files": [str(x) for x in fs.files], "scores": oof[epoch].round(5).tolist()}}


def _report_text(cv: dict[str, Any], data: list[str]) -> str:
    def cell(fig: dict) -> str:
        lo, hi = (100 * v for v in fig["ci95"])
        return f"{100 * fig['rate']:.1f} % ({fig['n']}; 95 % CI {lo:.0f}-{hi:.0f})"

    keys = ("good_accepted", "bad_rejected", "clinical_gradable")
    rows = [[f"fold {pf['fold']}", pf["threshold"]] + [cell(pf[k]) for k in keys] for pf in cv["per_fold"]]
    rows.append(["pooled (each fold at a threshold chosen on the others)", "-"]
                + [cell(cv["pooled_nested"][k]) for k in keys])
    rows.append(["mean +- sd over folds", "-"]
                + [f"{100 * cv['spread'][k]['mean']:.1f} +- {100 * cv['spread'][k]['sd']:.1f} %"
                   for k in keys])
    table = markdown_table(["", "p(poor) threshold", "DRIMDB good accepted", "DRIMDB bad + outlier rejected",
                            "clinical photographs judged gradable"], rows)
    return (f"# quality-fundus: patient-level {cv['folds']}-fold cross-validation on real photographs\n\n"
            f"Data: {', '.join(data)}. Chosen by rule: {cv['chosen_epochs']} epochs, p(poor) threshold "
            f"{cv['chosen_threshold']} (objective by epoch: {cv['objective_by_epoch']}).\n\n{table}\n")


def train(request) -> Path:
    torch.set_num_threads(request.threads or torch.get_num_threads())
    fs = load_fundus_sets(list(request.data_dirs), CROP, request.out_dir / "cache", request.progress)
    meta: dict[str, Any] = {"variant": "real-mix", "data": [str(d) for d in request.data_dirs],
                            "seed": request.seed, "shares": SHARES, "weak_weight": WEAK_WEIGHT,
                            "init": INIT.name, "images": int(len(fs)),
                            "phantoms": int(fs.phantom.sum())}
    epochs, threshold = request.epochs or EPOCHS, None
    if request.folds > 1:
        cv = cross_validate(fs, request.folds, request.seed, epochs)
        write_report(request.out_dir, "quality-fundus-real-cv", cv, _report_text(cv, meta["data"]))
        epochs, threshold = cv["chosen_epochs"], cv["chosen_threshold"]
        meta["cv"] = {k: cv[k] for k in ("chosen_epochs", "chosen_threshold", "pooled_nested", "spread")}
    net, _ = _train(fs, np.arange(len(fs)), epochs, request.seed)
    meta.update({"epochs": epochs, "poor_threshold": threshold})
    return ship_real(net, ProbabilitiesOnly(net), task_plugin(), request.out_dir, "quality_fundus.onnx", meta)


def evaluate_real(request) -> dict[str, Any]:
    """`edgeret eval quality-fundus --data REAL`: the shipped runtime's decisions on real photographs."""
    from edgeret.build.training.real_eval import report, run_on_folder
    from edgeret.build.training.real_fundus import quality_labels

    task = task_plugin()
    good, bad, clinical = [], [], []
    for labels, result in run_on_folder(task, request):
        quality, weak = quality_labels(labels)
        group = clinical if weak else bad if quality == 2 else good if quality >= 0 else []
        group.append(result["gradable"])
    figures = {"good photographs accepted": rate(np.array(good, bool)),
               "bad + outlier photographs rejected": rate(~np.array(bad, bool)),
               "clinical photographs (weakly gradable) judged gradable": rate(np.array(clinical, bool))}
    return report(request, task, {k: v for k, v in figures.items() if v["n"]},
                  "Real labels: good -> gradable; bad, outlier -> poor; a clinical photograph with a DR/DME "
                  "grade and no quality label is weakly gradable.")
