"""`edgeret eval TASK --data REAL`: a task's shipped runtime (preprocess, ONNX, its operating points)
on a folder of real, labelled images, with proportions and 95 % Wilson intervals (build host).

Each task turns the per-image results into its own figures; this module runs the runtime exactly
as `edgeret run` does and writes the report. Figures on the data a model was trained on are a
regression check, not an estimate: use a held-out folder for that (the CV reports are the
estimate on the development data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeret.build.data.datasets import load_dataset
from edgeret.build.progress import progress_bar
from edgeret.plugin.registrations import EvalRequest, TaskPlugin
from edgeret.reports import markdown_table, write_report


def run_on_folder(task: TaskPlugin, request: EvalRequest) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(labels, runtime result) for every labelled image of ``request.data_dir``."""
    from edgeret.plugin.host import get_host
    from edgeret.runtime.task_session import TaskSession

    model = (Path(request.models_dir) / Path(task.default_model).name) if request.models_dir else None
    session = TaskSession(task, get_host().backend("onnxruntime"), model=model)
    samples = load_dataset(request.data_dir).samples
    return [(s.labels, session.predict_file(s.path))
            for s in progress_bar(samples, f"eval {task.name}", enabled=request.progress)]


def report(request: EvalRequest, task: TaskPlugin, figures: dict[str, dict[str, Any]],
           notes: str = "") -> dict[str, Any]:
    """Write ``<task>-real-eval.{json,md}`` and print the table."""
    rows = []
    for name, fig in figures.items():
        lo, hi = fig["ci95"]
        rows.append([name, f"{100 * fig['rate']:.1f} %", fig["n"], f"{100 * lo:.1f}-{100 * hi:.1f} %"])
    table = markdown_table(["figure", "rate", "n", "95 % CI (Wilson)"], rows)
    text = (f"# {task.name} on {request.data_dir} (shipped runtime, ONNX Runtime)\n\n{notes}\n\n{table}\n")
    summary = {"task": task.name, "data": str(request.data_dir), "figures": figures}
    write_report(request.out_dir, f"{task.name}-real-eval", summary, text)
    print(text)
    return summary

