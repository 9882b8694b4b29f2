"""dr-grade trained and judged on real photographs (build host only; imports torch).

`edgeret train dr-grade --data REAL [--data MORE ...] [--folds K]` runs this recipe whenever more
than one folder or ``--folds`` is given (labels: ``edgeret.build.training.real_fundus``).

Real DR labels are coarse: 0, NPDR (ICDR 1-3) or PDR (ICDR 4). The five-class ICDR head learns
from them by the likelihood of the coarse class (p(NPDR) = p1 + p2 + p3, p(PDR) = p4); phantoms,
whose ICDR grade is exact, keep the split inside NPDR. A DME head (sigmoid) learns the DME label.
"Referable" is what screening programmes refer: moderate NPDR or worse, or DME, scored as
p(referable) = 1 - (1 - p(DME)) (1 - p(ICDR >= 2)). The quality head learns gradable-or-not on the
same real photographs (clinical ones weakly gradable), DRIMDB, real photographs degraded into poor
ones (no DR or DME loss on those), and phantoms.

With ``--folds K`` (patient-level): thresholds on p(poor) and p(referable) and the epoch count are
chosen by rules fixed here; each fold is reported at thresholds chosen on the other folds only.
Retake (ungradable) counts as referred, as programmes send ungradable eyes to an examination.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edgeret.build.training.folds import group_folds, mean_spread, rate, scored_epochs
from edgeret.build.training.real_batches import DEGRADED, binary_quality_loss, draw
from edgeret.build.training.real_fit import run_epoch, ship_real
from edgeret.build.training.real_fundus import FundusSet, load_fundus_sets
from edgeret.reports import markdown_table, write_report

from . import WEIGHTS_DIR, task_plugin
from .model import DRGradeNet, Probabilities
from .processing import INPUT_SIZE, REFERABLE_FROM, enhance

SHARES = {"graded": 0.45, "quality": 0.15, DEGRADED: 0.2, "phantom": 0.2}
WEAK_WEIGHT = 0.5
EPOCHS, BATCH, LR = 8, 16, 5e-4
EVAL_EPOCHS = (4, 8)
Q_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
R_THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.02), 2)
MIN_SENSITIVITY = 0.92  # the rule for p(referable): most specific threshold with this sensitivity
INIT = WEIGHTS_DIR / "multi-task.pt"  # the phantom-trained model this recipe starts from
COARSE = ((0,), (1, 2, 3), (4,))  # ICDR grades in coarse classes 0, NPDR, PDR


def _pools(fs: FundusSet, index: np.ndarray) -> dict[str, np.ndarray]:
    real = index[~fs.phantom[index]]
    graded = real[(fs.dr_coarse[real] >= 0) | (fs.dme[real] >= 0)]
    return {"graded": graded,
            "quality": real[(fs.dr_coarse[real] < 0) & (fs.dme[real] < 0) & (fs.quality[real] >= 0)],
            DEGRADED: real[(fs.quality[real] >= 0) & (fs.quality[real] != 2)],
            "phantom": index[fs.phantom[index]]}


def _input(crop: np.ndarray) -> np.ndarray:
    img = crop.astype(np.float32) / 255.0 if crop.dtype == np.uint8 else crop
    if img.shape[0] != INPUT_SIZE:
        img = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(enhance(img).transpose(2, 0, 1), dtype=np.float32)


def _loss(net: DRGradeNet, fs: FundusSet, batch: list) -> torch.Tensor:
    x = torch.from_numpy(np.stack([_input(img) for _, _, img in batch]))
    dr_logits, q_logits, dme_logit = net(x)
    idx = np.array([i for i, _, _ in batch])
    degraded = np.array([pool == DEGRADED for _, pool, _ in batch])
    poor = torch.tensor(np.where(degraded, 1.0, (fs.quality[idx] == 2).astype(float)), dtype=torch.float32)
    weight = torch.tensor(np.where(fs.weak[idx] & ~degraded, WEAK_WEIGHT, 1.0), dtype=torch.float32)
    loss = binary_quality_loss(q_logits, poor, weight)
    log_p = F.log_softmax(dr_logits, dim=1)
    exact = torch.from_numpy(fs.phantom[idx] & (fs.dr_icdr[idx] >= 0) & ~degraded)
    if exact.any():
        loss = loss + F.nll_loss(log_p[exact], torch.from_numpy(fs.dr_icdr[idx][exact.numpy()]).long())
    coarse = torch.from_numpy(~fs.phantom[idx] & (fs.dr_coarse[idx] >= 0) & ~degraded)
    if coarse.any():
        grouped = torch.stack([torch.logsumexp(log_p[:, list(g)], dim=1) for g in COARSE], dim=1)
        loss = loss + F.nll_loss(grouped[coarse], torch.from_numpy(fs.dr_coarse[idx][coarse.numpy()]).long())
    dme = torch.from_numpy((fs.dme[idx] >= 0) & ~degraded)
    if dme.any():
        target = torch.from_numpy(fs.dme[idx][dme.numpy()].astype(np.float32))
        loss = loss + F.binary_cross_entropy_with_logits(dme_logit[dme, 0], target)
    return loss


@torch.no_grad()
def scores(net: DRGradeNet, fs: FundusSet, index: np.ndarray) -> dict[str, np.ndarray]:
    """p(poor) and p(referable) (plus the ICDR argmax and p(DME)) for each of ``index``."""
    model = Probabilities(net).eval()
    parts: dict[str, list] = {"p_poor": [], "p_referable": [], "grade": [], "p_dme": []}
    for start in range(0, len(index), 16):
        x = torch.from_numpy(np.stack([_input(fs.images[i]) for i in index[start:start + 16]]))
        dr, quality, dme = (t.numpy() for t in model(x))
        p_dme = dme[:, 0]
        parts["p_poor"].append(quality[:, 2])
        parts["p_referable"].append(1 - (1 - p_dme) * (1 - dr[:, REFERABLE_FROM:].sum(axis=1)))
        parts["grade"].append(dr.argmax(axis=1))
        parts["p_dme"].append(p_dme)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def _train(fs: FundusSet, index: np.ndarray, epochs: int, seed: int, eval_index: np.ndarray | None = None,
           log=print) -> tuple[DRGradeNet, dict[int, dict[str, np.ndarray]]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = DRGradeNet()
    missing = net.load_state_dict(torch.load(INIT, weights_only=True), strict=False).missing_keys
    assert set(missing) <= {"dme_head.weight", "dme_head.bias"}, missing
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    steps = max(1, len(index) // BATCH)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, EPOCHS) * steps)
    pools = _pools(fs, index)
    found: dict[int, dict[str, np.ndarray]] = {}
    for epoch in range(1, epochs + 1):
        loss, seconds = run_epoch(net, optimizer, scheduler, steps,
                                  lambda: _loss(net, fs, draw(fs, pools, SHARES, BATCH, rng)))
        log(f"  epoch {epoch}/{epochs}: loss {loss:.4f} ({seconds:.0f} s)", flush=True)
        if eval_index is not None and epoch in scored_epochs(EVAL_EPOCHS, epochs):
            found[epoch] = scores(net, fs, eval_index)
    return net, found


def figures(fs: FundusSet, index: np.ndarray, s: dict[str, np.ndarray], t_poor: float,
            t_ref: float) -> dict[str, Any]:
    """Real figures at two thresholds; retake counts as referred."""
    real = ~fs.phantom[index]
    retake = s["p_poor"] >= t_poor
    refer = retake | (s["p_referable"] >= t_ref)
    clinical = real & ((fs.dr_coarse[index] >= 0) | (fs.dme[index] >= 0))
    positive = clinical & ((fs.dr_coarse[index] == 2) | (fs.dme[index] == 1))
    negative = clinical & (fs.dr_coarse[index] == 0) & (fs.dme[index] == 0)
    npdr_only = clinical & (fs.dr_coarse[index] == 1) & (fs.dme[index] == 0)
    drimdb = real & ~clinical & (fs.quality[index] >= 0)
    answered_pos, answered_neg = positive & ~retake, negative & ~retake
    return {"answered": rate(~retake[clinical]),
            "sensitivity": rate(refer[positive]), "specificity": rate(~refer[negative]),
            "sensitivity_answered": rate(refer[answered_pos]),
            "specificity_answered": rate(~refer[answered_neg]),
            "npdr_without_dme_referred": rate(refer[npdr_only]),
            "drimdb_good_accepted": rate(~retake[drimdb & (fs.quality[index] != 2)]),
            "drimdb_bad_rejected": rate(retake[drimdb & (fs.quality[index] == 2)])}


def choose(fs: FundusSet, index: np.ndarray, s: dict[str, np.ndarray]) -> tuple[float, float]:
    """The rules: p(poor) threshold with the best mean of answered, DRIMDB good accepted and bad
    rejected; then the most specific p(referable) threshold whose sensitivity >= MIN_SENSITIVITY."""
    def q_score(t: float) -> float:
        f = figures(fs, index, s, t, 0.5)
        keys = ("answered", "drimdb_good_accepted", "drimdb_bad_rejected")
        return float(np.mean([f[k]["rate"] for k in keys if f[k]["n"]]))

    t_poor = float(max(Q_THRESHOLDS, key=lambda t: (round(q_score(t), 4), -abs(t - 0.5))))
    passing = [t for t in R_THRESHOLDS
               if figures(fs, index, s, t_poor, t)["sensitivity"]["rate"] >= MIN_SENSITIVITY]
    t_ref = float(max(passing)) if passing else float(R_THRESHOLDS[0])
    return t_poor, t_ref


def _objective(f: dict[str, Any]) -> float:
    return float(np.mean([f[k]["rate"] for k in ("answered", "sensitivity", "specificity") if f[k]["n"]]))


def cross_validate(fs: FundusSet, k: int, seed: int, epochs: int = EPOCHS, log=print) -> dict[str, Any]:
    folds = group_folds(fs.groups, k, seed)
    scored = scored_epochs(EVAL_EPOCHS, epochs)
    everyone = np.arange(len(fs))
    oof: dict[int, dict[str, np.ndarray]] = {}
    for f, held in enumerate(folds):
        train = np.setdiff1d(everyone, held)
        log(f"fold {f + 1}/{k}: {len(train)} training, {len(held)} held-out photographs", flush=True)
        _, found = _train(fs, train, epochs, seed + f, eval_index=held, log=log)
        for e, s in found.items():
            for key, v in s.items():
                oof.setdefault(e, {}).setdefault(key, np.zeros(len(fs), v.dtype))[held] = v
    by_epoch = {e: _objective(figures(fs, everyone, oof[e], *choose(fs, everyone, oof[e])))
                for e in scored}
    epoch = max(scored, key=lambda e: (round(by_epoch[e], 3), -e))
    s = oof[epoch]
    t_poor, t_ref = choose(fs, everyone, s)
    per_fold, decided = [], np.zeros((len(fs), 2))
    for f, held in enumerate(folds):
        rest = np.setdiff1d(everyone, held)
        tp, tr = choose(fs, rest, {k2: v[rest] for k2, v in s.items()})
        held_s = {k2: v[held] for k2, v in s.items()}
        per_fold.append({"fold": f + 1, "t_poor": tp, "t_referable": tr, **figures(fs, held, held_s, tp, tr)})
        decided[held] = np.stack([held_s["p_poor"] >= tp, held_s["p_referable"] >= tr], 1)
    nested = figures(fs, everyone, {"p_poor": decided[:, 0], "p_referable": decided[:, 1]}, 0.5, 0.5)
    keys = [k2 for k2 in nested if isinstance(nested[k2], dict)]
    return {"folds": k, "seed": seed, "objective_by_epoch": by_epoch, "chosen_epochs": epoch,
            "chosen_t_poor": t_poor, "chosen_t_referable": t_ref, "per_fold": per_fold,
            "pooled_nested": nested,
            "spread": {k2: mean_spread([pf[k2]["rate"] for pf in per_fold]) for k2 in keys},
            "oof": {"files": [str(x) for x in fs.files], **{k2: v.round(5).tolist() for k2, v in s.items()}}}


def _report_text(cv: dict[str, Any], data: list[str]) -> str:
    def cell(fig: dict) -> str:
        lo, hi = (100 * v for v in fig["ci95"])
        return f"{100 * fig['rate']:.1f} % ({fig['n']}; {lo:.0f}-{hi:.0f})"

    keys = ("answered", "sensitivity", "specificity", "sensitivity_answered", "specificity_answered",
            "npdr_without_dme_referred", "drimdb_good_accepted", "drimdb_bad_rejected")
    rows = [[f"fold {pf['fold']}", f"{pf['t_poor']} / {pf['t_referable']}"] + [cell(pf[k]) for k in keys]
            for pf in cv["per_fold"]]
    rows.append(["pooled, nested", "-"] + [cell(cv["pooled_nested"][k]) for k in keys])
    rows.append(["mean +- sd over folds", "-"]
                + [f"{100 * cv['spread'][k]['mean']:.1f} +- {100 * cv['spread'][k]['sd']:.1f}" for k in keys])
    table = markdown_table(["", "t poor / t referable", "answered (clinical)", "referable sens. (PDR or DME)",
                            "spec. (DR 0, no DME)", "sens. on answered", "spec. on answered",
                            "NPDR without DME referred", "DRIMDB good accepted", "DRIMDB bad rejected"], rows)
    return (f"# dr-grade: patient-level {cv['folds']}-fold cross-validation on real photographs\n\n"
            f"Data: {', '.join(data)}. Chosen by rule: {cv['chosen_epochs']} epochs, p(poor) threshold "
            f"{cv['chosen_t_poor']}, p(referable) threshold {cv['chosen_t_referable']}. Retake counts as "
            "referred. Cells: rate (n; 95 % Wilson interval).\n\n" + table + "\n")


def train(request) -> Path:
    torch.set_num_threads(request.threads or torch.get_num_threads())
    fs = load_fundus_sets(list(request.data_dirs), INPUT_SIZE, request.out_dir / "cache", request.progress)
    meta: dict[str, Any] = {"variant": "real-mix", "data": [str(d) for d in request.data_dirs],
                            "seed": request.seed, "shares": SHARES, "weak_weight": WEAK_WEIGHT,
                            "init": INIT.name, "images": int(len(fs)), "phantoms": int(fs.phantom.sum())}
    epochs, thresholds = request.epochs or EPOCHS, (None, None)
    if request.folds > 1:
        cv = cross_validate(fs, request.folds, request.seed, epochs)
        write_report(request.out_dir, "dr-grade-real-cv", cv, _report_text(cv, meta["data"]))
        epochs, thresholds = cv["chosen_epochs"], (cv["chosen_t_poor"], cv["chosen_t_referable"])
        meta["cv"] = {k: cv[k] for k in ("chosen_epochs", "chosen_t_poor", "chosen_t_referable",
                                         "pooled_nested", "spread")}
    net, _ = _train(fs, np.arange(len(fs)), epochs, request.seed)
    meta.update({"epochs": epochs, "poor_threshold": thresholds[0], "referable_threshold": thresholds[1]})
    return ship_real(net, Probabilities(net), task_plugin(), request.out_dir, "dr_grade.onnx", meta)


def evaluate_real(request) -> dict[str, Any]:
    """`edgeret eval dr-grade --data REAL`: the shipped runtime's answers on real photographs
    (retake counts as referred)."""
    from edgeret.build.training.real_eval import report, run_on_folder

    from .processing import RETAKE

    task = task_plugin()
    answered, positive, negative, npdr, good, bad = [], [], [], [], [], []
    for labels, result in run_on_folder(task, request):
        retake = result["result"] == RETAKE
        refer = retake or bool(result["referable"])
        dr, dme = str(labels.get("dr", "")), labels.get("dme")
        if "dr" in labels or "dme" in labels:
            answered.append(not retake)
            if dr == "PDR" or dme == 1:
                positive.append(refer)
            elif dr == "0" and dme == 0:
                negative.append(not refer)
            elif dr == "NPDR" and dme == 0:
                npdr.append(refer)
        elif "quality" in labels:
            (bad if str(labels["quality"]) in ("bad", "outlier", "poor") else good).append(not retake)
    figures = {"answered (clinical photographs)": rate(np.array(answered, bool)),
               "referable sensitivity (PDR or DME)": rate(np.array(positive, bool)),
               "specificity (no DR, no DME)": rate(np.array(negative, bool)),
               "NPDR without DME referred": rate(np.array(npdr, bool)),
               "good photographs answered": rate(np.array(good, bool)),
               "bad + outlier photographs: retake": rate(~np.array(bad, bool))}
    return report(request, task, {k: v for k, v in figures.items() if v["n"]},
                  "Retake (ungradable) counts as referred. NPDR without DME spans mild (not referable) and "
                  "moderate-severe (referable): reported, not scored.")
