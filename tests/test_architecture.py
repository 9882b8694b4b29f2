"""The import contract (docs/architecture.md): the device side never loads the build host.

Device-side modules (camera, hub, codec runtime, task pre/post-processing,
backends) are followed through their module-level imports, transitively across
the repository; none may reach torch (or another build-host-only library),
``edgeret.build.training``, ``edgeret.build.export`` or ``edgeret_exporters``. Imports
inside functions are allowed: that is how device commands defer build-host
work. Plugins never use the core's private (``_name``) functions or modules.
``tests/runtime/test_runtime_without_torch.py`` runs the real commands; this file
checks every device module, names the import chain, and proves it catches a
violation.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"edgeret": ROOT / "edgeret", "edgeret_plugins": ROOT / "plugins",
            "edgeret_exporters": ROOT / "exporters", "edgeret_devices": ROOT / "devices"}
BUILD_ONLY_LIBRARIES = {"torch", "torchvision", "onnx", "onnxscript", "nncf", "litert_torch", "tensorflow"}
BUILD_ONLY_PACKAGES = ("edgeret.build", "edgeret_exporters")
# `*` is one module or package name; a package pattern (`edgeret.hub.*`) includes the package itself.
# Every stage package of edgeret/ is device side except build/ (and the CLI commands that need it).
DEVICE_PATTERNS = (
    "edgeret", "edgeret.errors", "edgeret.metrics",
    "edgeret.plugin.*", "edgeret.devices.*", "edgeret.images.*", "edgeret.runtime.*",
    "edgeret.codec.*", "edgeret.codec.ert.*", "edgeret.bundle.*", "edgeret.link.*",
    "edgeret.camera.*", "edgeret.hub.*", "edgeret.hub.db.*", "edgeret.reader.*",
    "edgeret.cli", "edgeret.cli.run_cmd", "edgeret.cli.devices_cmd", "edgeret.cli.plugins_cmd",
    "edgeret.cli.codec_cmd", "edgeret.cli.upload_cmd", "edgeret.cli.restore_cmd",
    "edgeret_plugins.tasks.*", "edgeret_plugins.tasks.*.processing", "edgeret_plugins.backends.*",
)
PLUGIN_FOLDERS = (ROOT / "plugins", ROOT / "exporters", ROOT / "devices",
                  ROOT / "tests" / "third_party_plugin")


def module_file(name: str) -> Path | None:
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    path = PACKAGES[top].joinpath(*rest)
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def expand(pattern: str) -> list[str]:
    """Dotted module names matching `pattern`; `pkg.*` is the package and every module or package in it."""
    if "*" not in pattern:
        return [pattern] if module_file(pattern) else []
    head, _, tail = pattern.partition(".*")
    folder = module_file(head).parent
    children = [f"{head}.{p.stem}" for p in folder.glob("[!_]*.py")]
    children += [f"{head}.{p.parent.name}" for p in folder.glob("[!_]*/__init__.py")]
    if tail:
        return sorted(name for child in children for name in expand(child + tail))
    return sorted([head, *children])


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run when the module is imported: not function bodies, not `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _module_level(node.orelse)
            continue
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With | ast.ClassDef | ast.For | ast.While):
            for field in ("body", "orelse", "finalbody"):
                yield from _module_level(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                yield from _module_level(handler.body)


def imports_of(name: str, source: str) -> list[str]:
    """Modules that importing `name` (whose text is `source`) imports at module level."""
    path = module_file(name)
    package = name if path and path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in _module_level(ast.parse(source).body):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.append(module)
            submodules = (f"{module}.{alias.name}" for alias in node.names)
            found += [sub for sub in submodules if module_file(sub)]
    return found


def build_host_reached(start: str, *, forbidden_packages=BUILD_ONLY_PACKAGES,
                       sources: Mapping[str, str] | None = None) -> list[str]:
    """Import chains from `start` to a build-host-only module, e.g. 'edgeret.runtime.grading -> torch'."""
    sources = sources or {}
    parent: dict[str, str | None] = {start: None}
    queue, hits = [start], []

    def chain(name: str) -> str:
        links = [name]
        while parent[links[-1]] is not None:
            links.append(parent[links[-1]])
        return " -> ".join(reversed(links))

    while queue:
        name = queue.pop(0)
        if name.split(".")[0] in BUILD_ONLY_LIBRARIES or any(
                name == p or name.startswith(p + ".") for p in forbidden_packages):
            hits.append(chain(name))
            continue
        path = module_file(name)
        if path is None:
            continue  # another distribution's module (numpy, pluggy, ...): only its name counts
        text = sources.get(name, path.read_text())
        targets = imports_of(name, text)
        targets += [".".join(t.split(".")[:i]) for t in list(targets) for i in range(1, t.count(".") + 1)]
        for target in targets:
            if target not in parent:
                parent[target] = name
                queue.append(target)
    return hits


DEVICE_MODULES = sorted({name for pattern in DEVICE_PATTERNS for name in expand(pattern)})
ENTRY_POINT_MODULES = sorted({ep.module for ep in importlib.metadata.distribution("edgeret").entry_points
                              if ep.group == "edgeret"})


def test_the_device_module_list_is_real():
    assert len(DEVICE_MODULES) > 40, DEVICE_MODULES
    for name in ("edgeret.hub.intake", "edgeret.camera.capture", "edgeret_plugins.tasks.codec.processing",
                 "edgeret_plugins.tasks.sr", "edgeret_plugins.backends.litert_backend", "edgeret.cli"):
        assert name in DEVICE_MODULES


@pytest.mark.parametrize("module", DEVICE_MODULES)
def test_device_module_does_not_reach_the_build_host(module):
    hits = build_host_reached(module)
    assert hits == [], "device-side module imports the build host at module level:\n" + "\n".join(hits)


@pytest.mark.parametrize("module", ENTRY_POINT_MODULES)
def test_every_builtin_plugin_imports_without_torch(module):
    """The host imports every built-in plugin on the device too, exporters included."""
    assert build_host_reached(module, forbidden_packages=("edgeret.build.training",)) == []


def test_device_modules_import_without_torch_in_a_fresh_interpreter():
    probe = (f"import importlib, json, sys\nfor m in {DEVICE_MODULES!r}: importlib.import_module(m)\n"
             "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    heavy = {m.split(".")[0] for m in loaded if m.split(".")[0] in BUILD_ONLY_LIBRARIES}
    heavy |= {m for m in loaded if any(m == p or m.startswith(p + ".") for p in BUILD_ONLY_PACKAGES)}
    assert sorted(heavy) == [], "the device modules loaded build-host modules"


def private_uses(source: str) -> list[str]:
    """`_name`s of the core (`edgeret.*`) that `source` imports or reads off a core module."""
    tree, core_aliases, found = ast.parse(source), set(), []

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module.split(".")[0] == "edgeret":
            found += [f"{node.module}.{a.name}" for a in node.names if private(a.name)]
            found += [node.module] if any(private(part) for part in node.module.split(".")) else []
            core_aliases |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "edgeret":
                    found += [alias.name] if any(private(p) for p in alias.name.split(".")) else []
                    core_aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = ast.unparse(node.value)
            if base.split(".")[0] in core_aliases:
                found.append(f"{base}.{node.attr}")
    return found


PLUGIN_FILES = sorted(p for folder in PLUGIN_FOLDERS for p in folder.rglob("*.py"))


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_use_only_the_public_core(path):
    assert private_uses(path.read_text()) == [], f"{path.relative_to(ROOT)} uses the core's private names"


# The checker itself: it must fail on the violations it exists to catch.

def test_the_contract_fails_when_a_device_module_imports_torch_at_the_top():
    grading = (ROOT / "edgeret" / "runtime" / "grading.py").read_text()
    assert build_host_reached("edgeret.hub.intake") == []
    hits = build_host_reached("edgeret.hub.intake",
                              sources={"edgeret.runtime.grading": "import torch\n" + grading})
    assert hits == ["edgeret.hub.intake -> edgeret.runtime.grading -> torch"]
    # deeper down: the entropy tables are imported by the whole codec, on both sides
    table = (ROOT / "edgeret" / "codec" / "ert" / "tables.py").read_text()
    hits = build_host_reached("edgeret.camera.capture",
                              sources={"edgeret.codec.ert.tables": "from torch import nn\n" + table})
    assert len(hits) == 1, hits
    assert hits[0].endswith("edgeret.codec.ert.entropy -> edgeret.codec.ert.tables -> torch"), hits


def test_the_contract_fails_when_a_device_module_imports_the_build_host():
    intake = (ROOT / "edgeret" / "hub" / "intake.py").read_text()
    for line, reached in (("from edgeret.build.training.loop import fit", "edgeret.build"),
                          ("from edgeret.build.export import pipeline", "edgeret.build"),
                          ("import edgeret_exporters.onnx_int8", "edgeret_exporters")):
        hits = build_host_reached("edgeret.hub.intake", sources={"edgeret.hub.intake": f"{line}\n{intake}"})
        assert hits and all(h.startswith("edgeret.hub.intake -> " + reached) for h in hits), (line, hits)


def test_imports_inside_functions_and_type_checking_blocks_are_allowed():
    grading = (ROOT / "edgeret" / "runtime" / "grading.py").read_text()
    lazy = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n" + grading
            + "\n\ndef _train():\n    import torch\n    from edgeret.build.training import loop\n")
    assert build_host_reached("edgeret.runtime.grading", sources={"edgeret.runtime.grading": lazy}) == []
    guarded = grading + "\ntry:\n    import torch\nexcept ImportError:\n    torch = None\n"
    assert build_host_reached("edgeret.runtime.grading", sources={"edgeret.runtime.grading": guarded}) == [
        "edgeret.runtime.grading -> torch"]


def test_the_private_name_check_catches_each_form():
    assert private_uses("from edgeret.codec.session import _load_runner, CodecSession") == [
        "edgeret.codec.session._load_runner"]
    assert private_uses("from edgeret.codec import session as codec_io\nrun = codec_io._load_runner") == [
        "codec_io._load_runner"]
    assert private_uses("import edgeret.plugin.host as h\nh._plugins") == ["h._plugins"]
    assert private_uses("from edgeret._internal import x") == ["edgeret._internal"]
    assert private_uses("from edgeret import __version__\nfrom .model import _local") == []


def test_docs_architecture_names_only_files_that_exist():
    """The stage table is kept true: every module path it names is in the tree."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    folders = ("", "edgeret/", "edgeret/*/", "edgeret/*/*/", "plugins/tasks/*/", "plugins/backends/",
               "exporters/")
    missing = [p for p in sorted(set(re.findall(r"`([\w/*.]+\.py)`", text)))
               if not any(list(ROOT.glob(f + p)) for f in folders)]
    assert missing == [], f"docs/architecture.md names files that do not exist: {missing}"


def test_the_slow_list_names_real_tests():
    """tests/conftest.py marks the slow tier by file and function name; a renamed test must not drop out."""
    from conftest import SLOW_FILES, SLOW_TESTS

    by_name = {p.name: p for p in Path(__file__).parent.rglob("test_*.py")}
    missing = [name for name in SLOW_FILES if name not in by_name]
    for entry in SLOW_TESTS:
        file, _, function = entry.partition("::")
        if file not in by_name or f"def {function}(" not in by_name[file].read_text():
            missing.append(entry)
    assert missing == [], f"tests/conftest.py names tests that do not exist: {missing}"
