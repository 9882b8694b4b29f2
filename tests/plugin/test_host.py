"""The plugin host: discovery, attribution, conflicts, broken plugins, disabling, tracing."""

from __future__ import annotations

import pytest
from conftest import make_distribution, run_cli, run_cli_json

from edgeret.errors import PluginError
from edgeret.plugin.host import Host

TASK_PLUGIN = """
    import numpy as np
    from edgeret import hookimpl
    from edgeret.plugin.registrations import TaskPlugin, TensorSpec

    @hookimpl
    def edgeret_tasks():
        yield TaskPlugin(
            name="{task}", modality="any", description="test task",
            inputs=(TensorSpec("x", (1, 1)),), outputs=(TensorSpec("y", (1, 1)),),
            preprocess=lambda image, task: {{"x": np.zeros((1, 1), np.float32)}},
            postprocess=lambda outputs, task: {{}},
        )
"""


def test_builtin_plugins_come_from_entry_points():
    host = Host()
    infos = {i.name: i for i in host.plugin_infos()}
    assert infos["onnxruntime"].distribution == "edgeret"
    assert infos["onnxruntime"].registers == {"backend": ["onnxruntime"]}
    assert "plugins" in host.subcommands() and "devices" in host.subcommands()
    assert host.failures == []


def test_duplicate_task_name_is_an_error_naming_both(site_dir, monkeypatch):
    make_distribution(site_dir, "dist-a", {"alpha": "alpha_plugin"},
                      {"alpha_plugin": TASK_PLUGIN.format(task="same-task")})
    make_distribution(site_dir, "dist-b", {"beta": "beta_plugin"},
                      {"beta_plugin": TASK_PLUGIN.format(task="same-task")})
    monkeypatch.syspath_prepend(str(site_dir))
    with pytest.raises(PluginError) as err:
        Host().tasks()
    message = str(err.value)
    assert "same-task" in message and "'alpha'" in message and "'beta'" in message
    # and through the CLI: one line, non-zero, no traceback
    proc = run_cli("plugins", env={"PYTHONPATH": str(site_dir)})
    assert proc.returncode == 2
    assert "'alpha'" in proc.stderr and "'beta'" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_broken_plugin_is_reported_and_skipped(site_dir):
    make_distribution(site_dir, "broken-dist", {"broken": "broken_plugin"},
                      {"broken_plugin": "import does_not_exist_anywhere\n"})
    make_distribution(site_dir, "good-dist", {"good": "good_plugin"},
                      {"good_plugin": TASK_PLUGIN.format(task="good-task")})
    env = {"PYTHONPATH": str(site_dir)}
    data = run_cli_json("plugins", env=env)
    failed = {f["name"]: f for f in data["failed"]}
    assert failed["broken"]["distribution"] == "broken-dist"
    assert "does_not_exist_anywhere" in failed["broken"]["error"]
    names = {p["name"]: p for p in data["plugins"]}
    assert names["good"]["registers"] == {"task": ["good-task"]}
    proc = run_cli("devices", env=env)  # the host keeps working
    assert proc.returncode == 0 and "jetson-orin-nano" in proc.stdout
    assert "plugin 'broken' (broken-dist) failed to load" in proc.stderr


def test_a_plugins_broken_device_profile_is_reported_and_skipped(site_dir, tmp_path):
    """One vendor's bad YAML must not stop a camera: the other profiles and commands keep working."""
    folder = tmp_path / "vendor-profiles"
    folder.mkdir()
    (folder / "bad-board.yaml").write_text("schema_version: 1\nname: bad-board\nbackends: [onnxruntime]\n")
    source = ("from pathlib import Path\nfrom edgeret import hookimpl\n"
              "from edgeret.plugin.registrations import DeviceProfileSource\n"
              "@hookimpl\ndef edgeret_device_profiles():\n"
              f"    yield DeviceProfileSource(Path({str(folder)!r}))\n")
    make_distribution(site_dir, "vendor-dist", {"vendor": "vendor_plugin"}, {"vendor_plugin": source})
    proc = run_cli("devices", env={"PYTHONPATH": str(site_dir)})
    assert proc.returncode == 0 and "jetson-orin-nano" in proc.stdout and "bad-board" not in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if "bad-board.yaml" in line]
    assert len(warning) == 1 and "plugin 'vendor'" in warning[0] and "missing" in warning[0], proc.stderr
    # the user's own folder stays strict: a bad file there is an error naming it
    proc = run_cli("devices", "--devices-dir", str(folder))
    assert proc.returncode == 2 and "bad-board.yaml" in proc.stderr


def test_hook_that_raises_is_reported_and_skipped(site_dir, monkeypatch):
    source = "from edgeret import hookimpl\n@hookimpl\ndef edgeret_tasks():\n    raise RuntimeError('boom')\n"
    make_distribution(site_dir, "raising-dist", {"raising": "raising_plugin"},
                      {"raising_plugin": source})
    monkeypatch.syspath_prepend(str(site_dir))
    host = Host()
    assert host.tasks() == {} or "raising" not in host.tasks()
    assert [(f.name, f.error) for f in host.failures] == [("raising", "RuntimeError: boom")]


def test_plugins_can_be_disabled_by_env_and_option(site_dir):
    make_distribution(site_dir, "x-dist", {"xplug": "x_plugin"},
                      {"x_plugin": TASK_PLUGIN.format(task="x-task")})
    env = {"PYTHONPATH": str(site_dir)}
    assert "xplug" in {p["name"] for p in run_cli_json("plugins", env=env)["plugins"]}
    by_env = run_cli_json("plugins", env={**env, "EDGERET_DISABLE_PLUGINS": "xplug, other"})
    assert "xplug" not in {p["name"] for p in by_env["plugins"]}
    assert "xplug" in by_env["disabled"]
    by_option = run_cli_json("plugins", "--disable-plugin", "xplug", env=env)
    assert "xplug" not in {p["name"] for p in by_option["plugins"]}
    # disabling a backend takes it out of device resolution
    shown = run_cli_json("devices", "show", "x86-cpu", "--disable-plugin", "onnxruntime")
    assert shown["backend_resolution"]["chosen"] is None


def test_wrong_registration_type_names_the_plugin(monkeypatch):
    class Bad:
        from edgeret import hookimpl

        @hookimpl
        def edgeret_backends(self):
            return [{"name": "loose-dict"}]

    host = Host()
    host.register(Bad(), "bad-plugin")
    with pytest.raises(PluginError, match="bad-plugin.*expected BackendPlugin"):
        host.backends()


def test_trace_env_prints_hook_calls():
    proc = run_cli("plugins", env={"EDGERET_TRACE_HOOKS": "1"})
    assert proc.returncode == 0
    assert "edgeret_backends [hook]" in proc.stderr  # pluggy's own trace
    assert "edgeret_backends <- plugin 'onnxruntime': [onnxruntime]" in proc.stderr


def test_unknown_task_lists_known_ones():
    proc = run_cli("run", "no-such-task", "x.png")
    assert proc.returncode == 2
    assert proc.stderr.startswith("edgeret: error: unknown task 'no-such-task'; known:")
