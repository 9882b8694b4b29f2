"""Registers the built-in subcommands through the same hook third parties use."""

from __future__ import annotations

from collections.abc import Iterable

from edgeret.cli import data_cmd, devices_cmd, plugins_cmd, run_cmd, train_cmd
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
    yield Subcommand("data", "synthesize phantom datasets or check a dataset folder",
                     data_cmd.configure, data_cmd.run)
    yield Subcommand("train", "train a task's model on a dataset folder (needs the export extra)",
                     train_cmd.configure_train, train_cmd.run_train)
    yield Subcommand("eval", "evaluate a task on a held-out dataset; writes reports",
                     train_cmd.configure_eval, train_cmd.run_eval)
