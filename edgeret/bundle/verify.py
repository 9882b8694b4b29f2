"""`edgeret verify`: replay a bundle's golden pairs on this machine's runtime.

Checks every file's hash, then for each task loads the artifact on the backend the
device profile's chain picks here (or the one asked for), replays the golden
input/output pairs within the recorded tolerances and checks agreement with the
fp32 model (same class, or PSNR above the floor recorded at export). Runtime code:
numpy + the standard library, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeret.bundle.manifest import MANIFEST, BundleError, check_hashes, load_golden, load_manifest
from edgeret.bundle.schema import Agreement, BundleManifest, TaskEntry
from edgeret.metrics import psnr


def output_scale(array: np.ndarray) -> float:
    """Tolerances are relative to the output's magnitude (probabilities: 1; logits, images: their max)."""
    finite = np.abs(np.asarray(array, dtype=np.float64))
    return max(1.0, float(finite.max())) if finite.size else 1.0


PSNR_CAP_DB = 200.0  # identical images count as 200 dB in means


def mean_psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Mean over images (leading axis) of each image's PSNR, capped at PSNR_CAP_DB."""
    values = [min(psnr(r, t, data_range), PSNR_CAP_DB) for r, t in zip(reference, test, strict=True)]
    return float(np.mean(values)) if values else float("nan")


def pick_backend(manifest: BundleManifest, entry: TaskEntry, backends: Mapping[str, Any],
                 requested: str | None = None) -> tuple[Any, str]:
    """The backend to load a task's artifact here: `requested`, else the profile's chain (first available
    that loads the artifact's format). Returns (plugin, why)."""
    fmt = entry.loads_as
    if requested:
        if requested not in backends:
            known = ", ".join(sorted(backends)) or "none installed"
            raise BundleError(f"unknown backend '{requested}'; known: {known}")
        plugin = backends[requested]
        if fmt not in plugin.formats:
            raise BundleError(f"backend '{requested}' cannot load {fmt} artifacts (it loads "
                              f"{', '.join(plugin.formats)})")
        availability = plugin.available()
        if not availability.ok:
            raise BundleError(f"backend '{requested}' is unavailable here: {availability.reason}")
        return plugin, "requested"
    skipped = []
    for name in manifest.device.backends:
        plugin = backends.get(name)
        if plugin is None:
            skipped.append(f"{name}: not installed")
            continue
        if fmt not in plugin.formats:
            skipped.append(f"{name}: does not load {fmt}")
            continue
        availability = plugin.available()
        if availability.ok:
            return plugin, "; ".join(skipped) or "first in the device's chain"
        skipped.append(f"{name}: {availability.reason}")
    raise BundleError(f"no backend of device '{manifest.device.name}' can load the {fmt} "
                      f"artifact here ({'; '.join(skipped)})")


@dataclass
class TaskCheck:
    task: str
    backend: str
    pairs: int
    max_error: dict[str, float] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)
    agreement: str = ""
    note: str = ""


def replay_task(root: Path, manifest: BundleManifest, name: str, backends: Mapping[str, Any],
                requested: str | None = None, threads: int | None = None) -> TaskCheck:
    """Load one task's artifact, replay its golden pairs within tolerance, check agreement with fp32."""
    entry = manifest.tasks[name]
    plugin, why = pick_backend(manifest, entry, backends, requested)
    golden = load_golden(root / entry.golden.file)
    info = entry.golden
    same = plugin.name == info.backend
    tol = info.tolerance if same else (info.cross_backend_tolerance or info.tolerance)
    runner = plugin.load(root / entry.artifact, threads=threads)
    check = TaskCheck(name, plugin.name, len(next(iter(golden["input"].values()))),
                      tolerance={"atol": tol.atol, "rtol": tol.rtol}, note=why)
    replayed: dict[str, list[np.ndarray]] = {n: [] for n in golden["output"]}
    for i in range(check.pairs):
        feeds = {n: a[i:i + 1] for n, a in golden["input"].items()}
        outputs = runner.run(feeds)
        for out_name, expected in golden["output"].items():
            if out_name not in outputs:
                raise BundleError(f"{name}: the model on {plugin.name} has no output '{out_name}' "
                                  f"(it has {', '.join(outputs)})")
            got = np.asarray(outputs[out_name], dtype=np.float64).reshape(expected[i:i + 1].shape)
            want = expected[i:i + 1].astype(np.float64)
            err = float(np.max(np.abs(got - want))) if got.size else 0.0
            allowed = tol.atol * output_scale(want) + tol.rtol * float(np.max(np.abs(want)))
            check.max_error[out_name] = max(check.max_error.get(out_name, 0.0), err)
            if not np.all(np.isfinite(got)):
                raise BundleError(f"{name}: golden pair {i}: output '{out_name}' on {plugin.name} "
                                  "is not finite")
            if err > allowed:
                raise BundleError(f"{name}: golden pair {i}: output '{out_name}' on {plugin.name} differs by "
                                  f"{err:.4g} > tolerance {allowed:.4g}")
            replayed[out_name].append(got)
    check.agreement = _agreement(name, entry, golden, {k: np.concatenate(v) for k, v in replayed.items()})
    return check


def _agreement(name: str, entry: TaskEntry, golden: Mapping[str, Mapping[str, np.ndarray]],
               replayed: Mapping[str, np.ndarray]) -> str:
    rule = entry.agreement or Agreement("none")
    kind, out = rule.kind, rule.output
    if kind == "none" or not golden["reference"]:
        return "n/a"
    if out not in replayed or out not in golden["reference"]:
        raise BundleError(f"{name}: agreement output '{out}' is not among the golden pairs")
    reference = golden["reference"][out]
    if kind == "class":
        same = int(np.sum(np.argmax(replayed[out], axis=-1) == np.argmax(reference, axis=-1)))
        total = len(reference)
        recorded = total if rule.expected_same is None else rule.expected_same
        if same < recorded:
            raise BundleError(f"{name}: only {same}/{total} golden pairs give the fp32 model's class "
                              f"(export recorded {recorded}/{total})")
        return f"{same}/{total} same class as fp32"
    if kind == "psnr":
        value = mean_psnr(reference, replayed[out], rule.data_range)
        floor = rule.min_db or 0.0
        if value < floor:
            raise BundleError(f"{name}: output '{out}' is {value:.2f} dB from the fp32 model's, below the "
                              f"{floor:.2f} dB recorded at export")
        return f"{value:.2f} dB PSNR vs fp32"
    raise BundleError(f"{name}: unknown agreement kind {kind!r} in the manifest")


@dataclass
class VerifyReport:
    root: Path
    device: str
    files: int
    tasks: list[TaskCheck]


def verify_bundle(root: str | Path, backends: Mapping[str, Any], *, backend: str | None = None,
                  tasks: Iterable[str] | None = None, threads: int | None = None) -> VerifyReport:
    """Hashes, then every task: load, replay golden pairs, agreement. BundleError on the first failure."""
    root = Path(root)
    manifest = load_manifest(root)
    count = check_hashes(root, manifest)
    names = list(tasks) if tasks else list(manifest.tasks)
    unknown = [n for n in names if n not in manifest.tasks]
    if unknown:
        have = ", ".join(manifest.tasks)
        raise BundleError(f"task '{unknown[0]}' is not in this bundle (it has {have})")
    checks = []
    for name in names:
        try:
            checks.append(replay_task(root, manifest, name, backends, backend, threads))
        except (KeyError, TypeError, ValueError) as exc:  # a manifest field of the wrong shape
            raise BundleError(f"{root / MANIFEST}: task '{name}': malformed entry "
                              f"({type(exc).__name__}: {exc})") from None
    return VerifyReport(root, manifest.device.name, count, checks)
