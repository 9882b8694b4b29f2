"""The export accuracy gate: fp32 vs exported on a held-out set, with the task's own metric.

Held-out sets come from the project's phantom generators, keyed by the task's
modality (fundus: `generate_fundus`, OCT: `generate_oct`, through
`edgeret.build.data.synth` so labels are the dataset layout's codes), with a seed
range no training or calibration set uses. A task's ground truth is read from
those labels where edgeret knows the task (`TRUTH_KEYS`); other tasks are
gated on agreement with the fp32 model.

Rules (`gate_rule`):

* classifier (labels + an output with one score per label): the task's metric
  in points (first of `task.metrics`, or `METRIC_OVERRIDES`, e.g. quadratic
  kappa for DR grading; accuracy otherwise), fp32 vs exported, allowed drop
  0.5 points; class agreement with fp32 reported too. No ground truth: the
  metric is agreement itself (fp32 = 100).
* image-to-image (an output with the input's spatial shape): PSNR against the
  clean image, fp32 vs exported, allowed drop 0.2 dB; PSNR of the exported
  output against the fp32 output reported too. Restoration tasks get their
  input from the task's own degradation (`DEGRADATIONS`: denoising adds the
  noise its evaluation uses); other image tasks are reconstructions of their
  input (a codec's autoencoder).
* anything else: fidelity, the PSNR of the exported outputs against the fp32
  outputs over their range, which must stay above `FIDELITY_MIN_DB`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.build.export.crops import fit_to_size, fixed_tile_size
from edgeret.build.progress import progress_bar
from edgeret.bundle.verify import mean_psnr
from edgeret.errors import EdgeretError
from edgeret.plugin.registrations import TaskPlugin

CLASS_ALLOWED_POINTS = 0.5
IMAGE_ALLOWED_DB = 0.2
FIDELITY_MIN_DB = 30.0
# Image-to-image gates average per-image PSNR of paired outputs: 32 images pin the drop to a few
# hundredths of a dB, and large images are slow (a 512x512 denoiser: minutes per pass on a CPU).
IMAGE_HELDOUT_CAP = 32
HELDOUT_SEED = 900  # synth seed: held-out sets use seeds >= 100; training < 100
# task -> label column (an int code in the task's label order) of the synthetic datasets' labels
TRUTH_KEYS = {"quality-oct": "quality", "quality-fundus": "quality", "dr-grade": "dr_grade"}


def _kappa5(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    from edgeret.metrics import quadratic_weighted_kappa

    return quadratic_weighted_kappa(y_true, y_pred, 5)


METRIC_OVERRIDES: dict[str, tuple[str, Callable[..., float]]] = {"dr-grade": ("quadratic_kappa", _kappa5)}


def _noisy(oct_: bool) -> Callable[[np.ndarray, int], np.ndarray]:
    def degrade(clean: np.ndarray, seed: int) -> np.ndarray:
        from edgeret.images.read_write import from_float01, to_float01
        from edgeret_plugins.tasks.denoise.evaluation import noisy_version

        return from_float01(noisy_version(to_float01(clean), seed, oct_), clean.dtype)

    return degrade


# task -> degrade(clean raw image, seed) -> the raw image the task is given (restoration tasks)
DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "denoise": _noisy(False), "denoise-oct": _noisy(True),
}


class Feeds(Sequence):
    """Preprocessed inputs, one ``{input: 1xCxHxW float32}`` per image, kept compactly.

    Inputs in [0, 1] are snapped to the 8-bit grid (`edgeret.bundle.manifest.snap_to_uint8`), held as uint8:
    a held-out set of 200 dr-grade images is 88 MB instead of 354 MB, and golden pairs taken from it
    are stored exactly."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._rows: list[dict[str, np.ndarray]] = []

    def append(self, feed: Mapping[str, np.ndarray]) -> None:
        from edgeret.bundle.manifest import snap_to_uint8

        row = {}
        for name in self.names:
            array = np.asarray(feed[name])
            snapped = snap_to_uint8(array)
            row[name] = array if snapped is None else np.rint(snapped * np.float32(255)).astype(np.uint8)
        self._rows.append(row)

    def __len__(self) -> int:
        return len(self._rows)

    def _decode(self, row: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: a.astype(np.float32) / np.float32(255) if a.dtype == np.uint8 else a
                for n, a in row.items()}

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._decode(r) for r in self._rows[index]]
        return self._decode(self._rows[index])


@dataclass
class HeldOut:
    feeds: Feeds  # one {input: 1xCxHxW} per image
    truth: np.ndarray | None  # class code per image (-1 unknown), or None
    source: str
    targets: Feeds | None = None  # restoration tasks: the clean image, preprocessed like the input
    raw: list[np.ndarray] | None = None  # tasks with an export_score: the raw images, as generated
    task: TaskPlugin | None = None  # the task as sized for the device (for export_score)


def heldout_set(task: TaskPlugin, n: int, seed: int = HELDOUT_SEED, progress: bool = True) -> HeldOut:
    """`n` phantom images of the task's modality, preprocessed, with ground truth where known.

    Tasks without labels (image-to-image) use at most IMAGE_HELDOUT_CAP images."""
    from edgeret.build.data.synth import ROW_MAKERS, SynthRequest

    phantoms = task.modality in ROW_MAKERS
    if not phantoms and task.calibration is None:
        raise EdgeretError(f"task '{task.name}' has modality '{task.modality}': edgeret has no phantom "
                           "generator for its held-out set, and the task has no calibration sampler")
    if n < 1:
        raise EdgeretError(f"the held-out set needs at least 1 image, got {n}")
    if not task.labels:
        n = min(n, IMAGE_HELDOUT_CAP)
    request = SynthRequest(modality=task.modality, n=n, seed=seed, out=Path("."))
    feeds, truth = Feeds([s.name for s in task.inputs]), []
    degrade = DEGRADATIONS.get(task.name)
    targets = Feeds([task.inputs[0].name]) if degrade else None
    raw: list[np.ndarray] | None = [] if task.export_score else None
    key = TRUTH_KEYS.get(task.name)
    # modality "any": the task's own sampler, at the held-out seed (its calibration uses others)
    sampled = None if phantoms else iter(task.calibration(n, seed))
    tile = fixed_tile_size(task)  # image-to-image at a fixed size: tiles of it, as the runtime runs
    for i in progress_bar(range(n), f"{task.name}: held-out set", total=n, enabled=progress):
        image, labels = ROW_MAKERS[task.modality](request, i) if phantoms else (next(sampled), {})
        if tile is not None:
            image = fit_to_size(image, tile, seed * 1_000_003 + i)
        if raw is not None:
            raw.append(image)
        if degrade is not None:
            targets.append(task.preprocess(image, task))
            image = degrade(image, int(labels.get("seed", i)))
        feeds.append(task.preprocess(image, task))
        truth.append(int(labels[key]) if key and key in labels else -1)
    codes = np.asarray(truth)
    first = seed * 1_000_000
    source = (f"{n} synthetic {task.modality} phantoms (edgeret.build.data.synth set seed {seed}: "
              f"phantom seeds {first}..{first + n - 1})" if phantoms else
              f"{n} images from the task's sampler {task.calibration.__module__}."
              f"{task.calibration.__qualname__}(n={n}, seed={seed})")
    if tile is not None:
        source += f", {tile[0]}x{tile[1]} tiles cut from each"
    if degrade is not None:
        source += f", degraded by the task's own noise model ({task.name})"
    return HeldOut(feeds, codes if key else None, source, targets, raw, task)


@dataclass(frozen=True)
class GateRule:
    kind: str  # "class", "image", "fidelity" or "score" (the task's ExportScore)
    output: str  # the output the gate reads
    metric: str  # name shown and stored
    unit: str  # "points" or "dB"
    allowed: float  # allowed drop (class/image) or minimum dB (fidelity)
    function: Callable[..., float] | None = None
    data_range: float = 1.0
    image_input: str = ""


def gate_rule(task: TaskPlugin, max_drop: float | None = None) -> GateRule:
    if task.export_score is not None:  # the task's own metric (e.g. the codec's round trip)
        own = task.export_score
        allowed = max_drop if max_drop is not None else own.allowed_drop
        if allowed is None:
            allowed = IMAGE_ALLOWED_DB if own.unit == "dB" else CLASS_ALLOWED_POINTS
        return GateRule("score", task.outputs[0].name, own.name, own.unit, allowed, own.score)
    n_labels = len(task.labels)
    for spec in task.outputs:
        if n_labels and isinstance(spec.shape[-1], int) and spec.shape[-1] == n_labels:
            if task.name in METRIC_OVERRIDES:
                name, fn = METRIC_OVERRIDES[task.name]
            elif task.metrics:
                name, fn = next(iter(task.metrics.items()))
            else:
                from edgeret.metrics import accuracy

                name, fn = "accuracy", accuracy
            allowed = CLASS_ALLOWED_POINTS if max_drop is None else max_drop
            return GateRule("class", spec.name, name, "points", allowed, fn)
    first = task.inputs[0]
    for spec in task.outputs:
        if len(spec.shape) == 4 and len(first.shape) == 4 and tuple(spec.shape[2:]) == tuple(first.shape[2:]):
            lo, hi = spec.value_range or (0.0, 1.0)
            allowed = IMAGE_ALLOWED_DB if max_drop is None else max_drop
            return GateRule("image", spec.name, "psnr", "dB", allowed, None, float(hi - lo), first.name)
    spec = task.outputs[0]
    lo, hi = spec.value_range or (0.0, 1.0)
    return GateRule("fidelity", spec.name, "psnr_vs_fp32", "dB", FIDELITY_MIN_DB, None, float(hi - lo))


@dataclass
class GateResult:
    precision: str
    backend: str
    rule: GateRule
    n: int
    fp32: float
    exported: float
    drop: float
    passed: bool
    agreement: float | None = None  # class: % same class as fp32; image: PSNR vs fp32
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision, "backend": self.backend, "kind": self.rule.kind,
            "metric": self.rule.metric, "unit": self.rule.unit, "n": self.n,
            "fp32": _round(self.fp32), "exported": _round(self.exported), "drop": _round(self.drop),
            "allowed_drop" if self.rule.kind != "fidelity" else "min_db": self.rule.allowed,
            "passed": self.passed,
            "agreement_with_fp32": _round(self.agreement), **self.extra,
        }

    def figures(self) -> str:
        if self.rule.kind == "fidelity":
            return (f"{self.rule.metric} {self.exported:.2f} dB (min {self.rule.allowed:.1f} dB)")
        text = (f"{self.rule.metric} fp32 {self.fp32:.2f} -> {self.precision} {self.exported:.2f} "
                f"(drop {self.drop:+.2f} {self.rule.unit}, allowed {self.rule.allowed:g})")
        if self.rule.kind == "class" and self.agreement is not None:
            text += f", {self.agreement:.1f}% same class as fp32"
        return text


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)


def evaluate_gate(rule: GateRule, heldout: HeldOut, fp32: Mapping[str, np.ndarray],
                  exported: Mapping[str, np.ndarray], precision: str, backend: str) -> GateResult:
    ref, out = np.asarray(fp32[rule.output]), np.asarray(exported[rule.output])
    n = len(ref)
    if rule.kind == "class":
        # the task's own decision (an operating point, say); argmax for a bare held-out set
        if heldout.task is not None:
            ref_cls, out_cls = heldout.task.decisions(ref), heldout.task.decisions(out)
        else:
            ref_cls, out_cls = np.argmax(ref, axis=-1), np.argmax(out, axis=-1)
        agreement = 100.0 * float(np.mean(ref_cls == out_cls))
        truth = heldout.truth
        known = truth is not None and bool(np.any(truth >= 0))
        if known:
            mask = truth >= 0
            before = 100.0 * float(rule.function(truth[mask], ref_cls[mask]))
            after = 100.0 * float(rule.function(truth[mask], out_cls[mask]))
            metric_rule = rule
        else:
            before, after = 100.0, agreement
            metric_rule = GateRule("class", rule.output, "agreement", "points", rule.allowed)
        drop = before - after
        result = GateResult(precision, backend, metric_rule, n, before, after, drop,
                            bool(drop <= rule.allowed + 1e-9), agreement)
        result.extra = {"ground_truth": "synthetic labels" if known else "none (agreement with fp32)"}
        return result
    if rule.kind == "score":
        task = heldout.task
        if heldout.raw is None or len(heldout.raw) != n or task is None:
            raise EdgeretError(f"gate '{rule.metric}' needs the held-out raw images")

        def mean_score(outputs: Mapping[str, np.ndarray]) -> float:
            return float(np.mean([rule.function(heldout.raw[i], {k: np.asarray(v)[i:i + 1]
                                                                  for k, v in outputs.items()}, task)
                                  for i in range(n)]))

        before, after = mean_score(fp32), mean_score(exported)
        drop = before - after
        return GateResult(precision, backend, rule, n, before, after, drop, bool(drop <= rule.allowed + 1e-9),
                          None, {"target": "the task's own export score"})
    if rule.kind == "image":
        clean = heldout.targets is not None
        source = heldout.targets if clean else heldout.feeds
        target = np.concatenate([source[i][rule.image_input] for i in range(len(source))])
        before = mean_psnr(target, ref, rule.data_range)
        after = mean_psnr(target, out, rule.data_range)
        drop = before - after
        vs = mean_psnr(ref, out, rule.data_range)
        return GateResult(precision, backend, rule, n, before, after, drop, bool(drop <= rule.allowed + 1e-9),
                          vs, {"target": "the clean image" if clean else "the input image (reconstruction)"})
    value = mean_psnr(ref, out, rule.data_range)
    return GateResult(precision, backend, rule, n, float("inf"), value, float("nan"),
                      bool(value >= rule.allowed), value)


def pick_golden(rule: GateRule, fp32: Mapping[str, np.ndarray], exported: Mapping[str, np.ndarray],
                count: int) -> list[int]:
    """Golden pair indices. Classifiers: the most confident image of each class the fp32 model
    predicts, then the next most confident, among images where exported and fp32 agree (a device's
    slightly different arithmetic must not flip a borderline golden pair)."""
    n = len(next(iter(fp32.values())))
    count = max(1, min(count, n))
    if rule.kind != "class":
        return list(range(count))
    ref, out = np.asarray(fp32[rule.output]), np.asarray(exported[rule.output])
    ref_cls = np.argmax(ref, axis=-1)
    ordered = np.sort(ref, axis=-1)
    margin = ordered[:, -1] - ordered[:, -2] if ref.shape[-1] > 1 else ordered[:, -1]
    agree = ref_cls == np.argmax(out, axis=-1)
    candidates = [i for i in np.argsort(-margin, kind="stable") if agree[i]] or list(range(n))
    chosen: list[int] = []
    for cls in sorted(set(int(ref_cls[i]) for i in candidates)):
        first = next(i for i in candidates if ref_cls[i] == cls)
        chosen.append(int(first))
    for i in candidates:
        if len(chosen) >= count:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return sorted(chosen[:count])
