"""Registers the built-in subcommands through the same hook third parties use."""

from __future__ import annotations

from collections.abc import Iterable

from edgeret.cli import devices_cmd, plugins_cmd, run_cmd
from edgeret.hookspecs import hookimpl
from edgeret.registrations import Subcommand


@hookimpl
def edgeret_subcommands() -> Iterable[Subcommand]:
    yield Subcommand("plugins", "list installed plugins and what they register",
                     plugins_cmd.configure, plugins_cmd.run)
    yield Subcommand("devices", "list device profiles, or `devices show NAME`",
                     devices_cmd.configure, devices_cmd.run)
    yield Subcommand("run", "run a task on images on the default backend (no torch)",
                     run_cmd.configure, run_cmd.run)
