"""Golden pairs of an exported model: what `edgeret verify` replays on the device.

Inputs are snapped to the 8-bit grid (stored exactly as uint8); outputs are the artifact's own, on the
gate backend, and the fp32 torch model's on exactly those inputs. Image tasks keep at most 2 pairs, and
large outputs other than the gate's are left out (size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeret.build.export import gate as gates
from edgeret.build.export.task_models import runner_outputs, torch_outputs
from edgeret.bundle.manifest import save_golden, snap_to_uint8
from edgeret.plugin.registrations import TaskPlugin

# Image outputs: verify wants the replayed output within 0.2 dB of the exported one's PSNR vs fp32, but
# never more than this (above ~40 dB the difference is invisible and runtimes legitimately differ).
PSNR_AGREEMENT_CAP_DB = 40.0
GOLDEN_ALL_OUTPUTS_BELOW = 1 << 16  # values per pair; larger outputs: only the gate's output is kept


def write_golden(task: TaskPlugin, rule: gates.GateRule, feeds: list[dict[str, np.ndarray]],
                 reference: dict[str, np.ndarray], exported: dict[str, np.ndarray], requested: int,
                 runner: Any, module: Any, path: Path) -> tuple[Path, list[int], dict[str, Any]]:
    """Pick up to `requested` held-out feeds (image tasks: 2), store their pairs at `path`; returns
    (path, indices, agreement)."""
    count = requested if rule.kind == "class" else min(requested, 2)
    indices = gates.pick_golden(rule, reference, exported, count)
    golden_feeds = []
    for i in indices:
        feed = {}
        for name, array in feeds[i].items():
            snapped = snap_to_uint8(array)
            feed[name] = array if snapped is None else snapped
        golden_feeds.append(feed)
    golden_in = {s.name: np.concatenate([f[s.name] for f in golden_feeds]) for s in task.inputs}
    golden_out = runner_outputs(runner, task, golden_feeds)
    golden_ref = torch_outputs(module, task, golden_feeds)
    kept_outputs = [k for k, v in golden_out.items()
                    if k == rule.output or v[:1].size <= GOLDEN_ALL_OUTPUTS_BELOW]
    golden_out = {k: golden_out[k] for k in kept_outputs}
    golden_ref = {k: golden_ref[k] for k in kept_outputs}
    golden_path = save_golden(path, golden_in, golden_out, golden_ref)
    agreement: dict[str, Any] = {"kind": "none"}
    if rule.kind == "class":
        same = int(np.sum(np.argmax(golden_out[rule.output], -1) == np.argmax(golden_ref[rule.output], -1)))
        agreement = {"kind": "class", "output": rule.output, "expected_same": same}
    elif rule.kind in ("image", "fidelity"):
        value = gates.mean_psnr(golden_ref[rule.output], golden_out[rule.output], rule.data_range)
        agreement = {"kind": "psnr", "output": rule.output, "data_range": rule.data_range,
                     "min_db": round(min(value - gates.IMAGE_ALLOWED_DB, PSNR_AGREEMENT_CAP_DB), 3)}
    return golden_path, indices, agreement
