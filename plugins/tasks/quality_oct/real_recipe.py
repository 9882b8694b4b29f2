"""quality-oct trained and judged on real B-scans (build host only; imports torch).

`edgeret train quality-oct --data REAL [--data PHANTOMS ...] [--folds K]` runs this recipe whenever
more than one folder or ``--folds`` is given. Real clinical B-scans (any ``labels.csv`` with a
``file`` column, e.g. ``../shared/data/real/oct``) are gradable anchors: a specialist graded DR and
DME on each. The quality paper's failures applied to real scans give sub-labelled poor examples
(DEGRADATIONS: heavy speckle -> noise, defocus -> blur, weak signal -> deficiency, the retina cut
by the frame -> deficiency, vessel/floater shadows -> slight deficiency); phantom folders
(``edgeret data synth --modality oct``) keep every grade and sub-label the real data lacks.

Grade loss: gradable-or-not likelihood on the three outputs for real scans (real labels never say
good vs usable), cross-entropy for phantoms; sub-label BCE only where the sub-label is known (the
applied degradation, the phantoms' labels). With ``--folds K`` (patient-level) the epoch count and
the p(poor) threshold are chosen by a rule fixed here, each fold reported at a threshold chosen on
the other folds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edgeret.build.data.datasets import is_real_layout, load_dataset
from edgeret.build.training.folds import group_folds, mean_spread, rate, scored_epochs
from edgeret.build.training.real_batches import binary_quality_loss
from edgeret.build.training.real_fit import run_epoch, ship_real
from edgeret.images.preprocess import preprocess_oct
from edgeret.images.read_write import read_image
from edgeret.reports import markdown_table, write_report

from . import WEIGHTS_DIR, task_plugin
from .model import DSFFNet, RuntimeOutputs, build
from .processing import INPUT_SIZE, NAME_TO_CODE, SUBLABELS
from .recipe import masked_bce

SHARES = {"real": 0.4, "degraded": 0.35, "phantom": 0.25}
EPOCHS, BATCH, LR = 12, 16, 5e-4
EVAL_EPOCHS = (4, 8, 12)
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
INIT = WEIGHTS_DIR / "dsff.pt"
H, W = INPUT_SIZE


def _speckle(x, rng):
    looks = rng.uniform(0.4, 1.0)
    return np.clip(x * rng.gamma(looks, 1 / looks, x.shape) ** 0.5, 0, 1), ("noise",)


def _blur(x, rng):
    return cv2.GaussianBlur(x, (0, 0), rng.uniform(0.012, 0.03) * H * 2), ("blur",)


def _weak_signal(x, rng):
    return np.clip(x * rng.uniform(0.15, 0.35) + rng.normal(0, 0.04, x.shape), 0, 1), ("deficiency",)


def _cut(x, rng):
    shift = int(rng.uniform(0.4, 0.7) * H) * (1 if rng.random() < 0.5 else -1)
    out = np.zeros_like(x)
    if shift > 0:
        out[shift:] = x[:-shift]
    else:
        out[:shift] = x[-shift:]
    return out, ("deficiency",)


def _shadows(x, rng):
    gain = np.ones(W, np.float32)
    for _ in range(int(rng.integers(3, 7))):
        c, w = int(rng.integers(0, W)), int(rng.uniform(0.04, 0.12) * W)
        gain[max(0, c - w):c + w] *= rng.uniform(0.05, 0.25)
    return x * cv2.GaussianBlur(gain[None], (0, 0), 2)[0][None, :], ("slight_deficiency",)


DEGRADATIONS = {"speckle": _speckle, "blur": _blur, "weak_signal": _weak_signal, "cut": _cut,
                "shadows": _shadows}


def degrade_scan(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One or two failures: (scan, sub-label targets with -1 where unknown)."""
    subs = np.full(len(SUBLABELS), -1.0, np.float32)
    for name in rng.choice(list(DEGRADATIONS), size=2 if rng.random() < 0.25 else 1, replace=False):
        x, raised = DEGRADATIONS[name](x, rng)
        for s in raised:
            subs[SUBLABELS.index(s)] = 1.0
    return np.clip(x, 0, 1).astype(np.float32), subs


def load_scans(folders: list[Path], progress: bool = False) -> dict[str, np.ndarray]:
    """Every scan preprocessed to the model input (uint8), with grade (-1: gradable anchor),
    sub-labels (-1 unknown), patient group and phantom flag."""
    rows: dict[str, list] = {k: [] for k in ("x", "grade", "subs", "groups", "phantom", "files")}
    for folder in folders:
        phantom = not is_real_layout(folder)
        for sample in load_dataset(folder).samples:
            scan = preprocess_oct(read_image(sample.path, expect="gray"), (H, W), scale=None)
            quality = sample.labels.get("quality")
            rows["x"].append(np.round(scan * 255).astype(np.uint8))
            rows["grade"].append(NAME_TO_CODE.get(str(quality), int(quality)) if phantom else -1)
            rows["subs"].append([float(sample.labels.get(s, -1)) if phantom else -1.0 for s in SUBLABELS])
            group = sample.labels.get("patient", sample.labels.get("subject", sample.path.name))
            rows["groups"].append(f"{folder.name}/{group}")
            rows["phantom"].append(phantom)
            rows["files"].append(str(sample.path))
    return {k: np.asarray(v) for k, v in rows.items()}


def _reframe(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another device's framing: a random 65-100 % of the width, fitted again (content at the top)."""
    rows = int(np.flatnonzero(x.max(axis=1) > 0)[-1]) + 1 if x.any() else H
    content = x[:rows]
    width = max(8, int(content.shape[1] * rng.uniform(0.65, 1.0)))
    left = int(rng.integers(0, content.shape[1] - width + 1))
    content = content[:, left:left + width]
    f = min(W / content.shape[1], H / content.shape[0])
    size = (max(1, round(content.shape[1] * f)), max(1, round(content.shape[0] * f)))
    fitted = cv2.resize(content, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    out = np.zeros_like(x)
    left = (W - size[0]) // 2
    out[:size[1], left:left + size[0]] = fitted
    return out


def _appearance(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another device's grey levels: gamma 0.6-1.6, a lifted noise floor (0-0.3), mild noise."""
    inside = x.max(axis=1, keepdims=True) > 0  # rows that hold the scan, not the padding below
    lift = rng.uniform(0.0, 0.3) if rng.random() < 0.6 else 0.0
    y = lift + (1 - lift) * np.power(x, rng.uniform(0.6, 1.6))
    y = y + rng.normal(0, rng.uniform(0, 0.04), x.shape)
    return np.clip(y, 0, 1).astype(np.float32) * inside


def _batch(data, pools, rng):
    names = [k for k in pools if len(pools[k])]
    p = np.array([SHARES[k] for k in names])
    xs, grade, poor, real, subs = [], [], [], [], []
    for pick in rng.choice(len(names), size=BATCH, p=p / p.sum()):
        pool = names[pick]
        i = int(rng.choice(pools[pool]))
        x = data["x"][i].astype(np.float32) / 255
        s = data["subs"][i].astype(np.float32)
        if rng.random() < 0.5:
            x = _reframe(x, rng)
        if rng.random() < 0.7:
            x = _appearance(x, rng)
        if pool == "degraded":
            x, s = degrade_scan(x, rng)
        if rng.random() < 0.5:
            x = x[:, ::-1]
        x = np.clip(x * rng.uniform(0.85, 1.15), 0, 1)
        xs.append(np.ascontiguousarray(x)[None])
        g = 2 if pool == "degraded" else int(data["grade"][i])
        grade.append(max(g, 0))
        poor.append(float(g == 2))
        real.append(pool != "phantom")
        subs.append(s)
    return (torch.from_numpy(np.stack(xs)), torch.tensor(grade), torch.tensor(poor),
            torch.tensor(real), torch.from_numpy(np.stack(subs)))


def _loss(net: DSFFNet, batch) -> torch.Tensor:
    x, grade, poor, real, subs = batch
    out = net(x)
    loss = binary_quality_loss(out["grade"][real], poor[real], torch.ones(int(real.sum())))
    if (~real).any():
        loss = loss + F.cross_entropy(out["grade"][~real], grade[~real])
    for head in ("backbone", "fusion"):
        if head in out:
            loss = loss + masked_bce(out[head], subs)
    return loss


@torch.no_grad()
def p_poor(net: DSFFNet, scans: np.ndarray) -> np.ndarray:
    net.eval()
    out = []
    for i in range(0, len(scans), 32):
        x = torch.from_numpy(scans[i:i + 32, None].astype(np.float32) / 255)
        out.append(torch.softmax(net(x)["grade"], 1)[:, 2])
    return torch.cat(out).numpy() if out else np.zeros(0)


def _degraded_copies(data, index, seed):
    rng = np.random.default_rng(seed + 1000)
    scans = [degrade_scan(data["x"][i].astype(np.float32) / 255, rng)[0] for i in index]
    return np.stack([np.round(x * 255).astype(np.uint8) for x in scans])


def _train(data, index, epochs, seed, eval_index=None, log=print):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build("dsff")
    net.load_state_dict(torch.load(INIT, weights_only=True))
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    steps = max(1, len(index) // BATCH)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, EPOCHS) * steps)
    real = index[~data["phantom"][index]]
    pools = {"real": real, "degraded": real, "phantom": index[data["phantom"][index]]}
    scores = {}
    held_real = eval_index[~data["phantom"][eval_index]] if eval_index is not None else None
    degraded = _degraded_copies(data, held_real, seed) if held_real is not None else None
    for epoch in range(1, epochs + 1):
        loss, seconds = run_epoch(net, optimizer, scheduler, steps,
                                  lambda: _loss(net, _batch(data, pools, rng)))
        log(f"  epoch {epoch}/{epochs}: loss {loss:.4f} ({seconds:.0f} s)", flush=True)
        if held_real is not None and epoch in scored_epochs(EVAL_EPOCHS, epochs):
            scores[epoch] = (p_poor(net, data["x"][held_real]), p_poor(net, degraded))
    return net, scores, held_real


def _figures(sources, real_scores, degraded_scores, t):
    """Per real source (folder): scans judged gradable; and degraded copies rejected."""
    figs = {f"{name}: judged gradable": rate(real_scores[sources == name] < t) for name in np.unique(sources)}
    return {**figs, "degraded copies rejected": rate(degraded_scores >= t)}


def _objective(fig) -> float:
    return float(np.mean([f["rate"] for f in fig.values() if f["n"]]))


def _best(sources, real_scores, degraded_scores):
    def score(t):
        return round(_objective(_figures(sources, real_scores, degraded_scores, t)), 4), -abs(t - 0.5)

    return float(max(THRESHOLDS, key=score))


def cross_validate(data, k, seed, epochs=EPOCHS, log=print):
    real_idx = np.flatnonzero(~data["phantom"])
    folds_real = group_folds(data["groups"][real_idx], k, seed)
    phantom_idx = np.flatnonzero(data["phantom"])
    source = np.array([g.split("/", 1)[0] for g in data["groups"]])
    scored = scored_epochs(EVAL_EPOCHS, epochs)
    results = {e: [] for e in scored}
    for f, held_pos in enumerate(folds_real):
        held = real_idx[held_pos]
        train = np.setdiff1d(np.concatenate([real_idx, phantom_idx]), held)
        log(f"fold {f + 1}/{k}: {len(train)} training, {len(held)} held-out real scans", flush=True)
        _, scores, _ = _train(data, train, epochs, seed + f, eval_index=held, log=log)
        for e, (rs, ds) in scores.items():
            results[e].append((source[held], rs, ds))

    def pooled(e, skip=None):
        parts = [r for j, r in enumerate(results[e]) if j != skip]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    by_epoch = {e: _objective(_figures(*pooled(e), _best(*pooled(e)))) for e in scored}
    epoch = max(scored, key=lambda e: (round(by_epoch[e], 3), -e))
    per_fold, nested_src, nested_real, nested_deg = [], [], [], []
    for f, (src, rs, ds) in enumerate(results[epoch]):
        t = _best(*pooled(epoch, skip=f))  # chosen without this fold
        per_fold.append({"fold": f + 1, "threshold": t, **_figures(src, rs, ds, t)})
        nested_src.append(src)
        nested_real.append((rs >= t).astype(float))
        nested_deg.append((ds >= t).astype(float))
    nested = _figures(*(np.concatenate(v) for v in (nested_src, nested_real, nested_deg)), 0.5)
    return {"folds": k, "seed": seed, "objective_by_epoch": by_epoch, "chosen_epochs": epoch,
            "chosen_threshold": _best(*pooled(epoch)), "per_fold": per_fold, "pooled_nested": nested,
            "spread": {key: mean_spread([pf[key]["rate"] for pf in per_fold]) for key in nested}}


def _report_text(cv, data_dirs):
    def cell(fig):
        lo, hi = (100 * v for v in fig["ci95"])
        return f"{100 * fig['rate']:.1f} % ({fig['n']}; {lo:.0f}-{hi:.0f})"
    keys = list(cv["pooled_nested"])
    rows = [[f"fold {pf['fold']}", pf["threshold"]] + [cell(pf[k]) if k in pf else "-" for k in keys]
            for pf in cv["per_fold"]]
    rows.append(["pooled, nested", "-"] + [cell(cv["pooled_nested"][k]) for k in keys])
    rows.append(["mean +- sd over folds", "-"]
                + [f"{100 * cv['spread'][k]['mean']:.1f} +- {100 * cv['spread'][k]['sd']:.1f}" for k in keys])
    table = markdown_table(["", "p(poor) threshold", *keys], rows)
    return (f"# quality-oct: patient-level {cv['folds']}-fold cross-validation on real B-scans\n\n"
            f"Data: {', '.join(data_dirs)}. Chosen by rule: {cv['chosen_epochs']} epochs, p(poor) threshold "
            f"{cv['chosen_threshold']}. Cells: rate (n; 95 % Wilson interval). The degraded column is "
            "synthetic damage on held-out real scans (the real sets hold no poor scans): a check, not a "
            "clinical figure.\n\n" + table + "\n")


def train(request) -> Path:
    torch.set_num_threads(request.threads or torch.get_num_threads())
    data = load_scans(list(request.data_dirs))
    meta: dict[str, Any] = {"variant": "real-mix", "data": [str(d) for d in request.data_dirs],
                            "seed": request.seed, "shares": SHARES, "init": INIT.name,
                            "scans": int(len(data["x"])), "phantoms": int(data["phantom"].sum())}
    epochs, threshold = request.epochs or EPOCHS, None
    if request.folds > 1:
        cv = cross_validate(data, request.folds, request.seed, epochs)
        write_report(request.out_dir, "quality-oct-real-cv", cv, _report_text(cv, meta["data"]))
        epochs, threshold = cv["chosen_epochs"], cv["chosen_threshold"]
        meta["cv"] = {k: cv[k] for k in ("chosen_epochs", "chosen_threshold", "pooled_nested", "spread")}
    net, _, _ = _train(data, np.arange(len(data["x"])), epochs, request.seed)
    meta.update({"epochs": epochs, "poor_threshold": threshold})
    return ship_real(net, RuntimeOutputs(net), task_plugin(), request.out_dir, "quality_oct.onnx", meta)


def evaluate_real(request) -> dict[str, Any]:
    """`edgeret eval quality-oct --data REAL`: how many real clinical B-scans the shipped runtime
    refuses (unreadable) and judges gradable."""
    from edgeret.build.training.real_eval import report
    from edgeret.errors import InputError
    from edgeret.plugin.host import get_host
    from edgeret.runtime.task_session import TaskSession

    task = task_plugin()
    model = (Path(request.models_dir) / "quality_oct.onnx") if request.models_dir else None
    session = TaskSession(task, get_host().backend("onnxruntime"), model=model)
    refused, gradable = [], []
    for sample in load_dataset(request.data_dir).samples:
        try:
            gradable.append(session.predict_file(sample.path)["gradable"])
            refused.append(False)
        except InputError:
            refused.append(True)
    figures = {"refused (unreadable)": rate(np.array(refused, bool)),
               "judged gradable": rate(np.array(gradable, bool))}
    return report(request, task, figures, "Clinical B-scans graded by specialists: gradable anchors.")
