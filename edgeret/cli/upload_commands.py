"""Registers `edgeret agent` (device upload) and `edgeret serve` (the hub) through the subcommand hook."""

from __future__ import annotations

from collections.abc import Iterable

from edgeret.cli import hub_cmd, upload_cmd
from edgeret.hookspecs import hookimpl
from edgeret.registrations import Subcommand


@hookimpl
def edgeret_subcommands() -> Iterable[Subcommand]:
    yield Subcommand("agent", "device: grade and encode each capture, upload it to the hub "
                              "(store-and-forward)",
                     upload_cmd.configure_agent, upload_cmd.run_agent)
    yield Subcommand("serve", "hub: receive .ert streams, decode, grade, write DICOM, forward to a PACS",
                     upload_cmd.configure_serve, upload_cmd.run_serve)
    yield Subcommand("hub", "hub administration: migrate-store (an older hub's JSON records into its "
                            "database)",
                     hub_cmd.configure, hub_cmd.run)
