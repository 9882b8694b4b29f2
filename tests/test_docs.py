"""The plugin guide documents every hook and every registration type."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import ROOT

from edgeret.plugin import hookspecs, registrations

GUIDE = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("edgeret_"))
TYPES = [registrations.TaskPlugin, registrations.BackendPlugin, registrations.ExporterPlugin,
         registrations.DeviceProfileSource, registrations.Subcommand, registrations.TensorSpec,
         registrations.TrainRequest, registrations.EvalRequest]


def test_there_are_hooks():
    assert len(HOOKS) >= 5


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert f"### `{hook}`" in GUIDE, f"docs/plugins.md has no section '### `{hook}`'"


@pytest.mark.parametrize("kind", TYPES, ids=lambda t: t.__name__)
def test_every_registration_field_is_documented(kind):
    missing = [f.name for f in dataclasses.fields(kind) if f"`{f.name}`" not in GUIDE]
    assert not missing, f"{kind.__name__} fields missing from docs/plugins.md: {missing}"


def test_readme_has_exactly_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = section.count("```sh")
    assert blocks == 2, "README '## Set up' must hold exactly two ```sh blocks"
    assert "make test" in section and "make demo" in section


def test_every_subcommand_is_in_the_readme():
    from edgeret.plugin.host import Host

    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Host().subcommands() if f"`edgeret {name}" not in readme]
    assert not missing, f"README.md does not mention: {missing}"
