"""Registers `export`, `verify`, `bench` and `build` through the subcommand hook.

Importing this module must stay cheap and torch-free (the device lists
commands too): `edgeret.cli.export_cmd` imports torch and the exporters only
inside the commands that need them.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeret.cli import export_cmd
from edgeret.hookspecs import hookimpl
from edgeret.registrations import Subcommand


@hookimpl
def edgeret_subcommands() -> Iterable[Subcommand]:
    yield Subcommand("export", "export every task for a device profile into a verified bundle (build host)",
                     export_cmd.configure_export, export_cmd.run_export)
    yield Subcommand("verify", "check a bundle: hashes, load on the device's backend, replay golden pairs",
                     export_cmd.configure_verify, export_cmd.run_verify)
    yield Subcommand("bench", "latency, throughput, peak memory and size of a bundle's models",
                     export_cmd.configure_bench, export_cmd.run_bench)
    yield Subcommand("build", "build a Jetson bundle's TensorRT engines on the device",
                     export_cmd.configure_build, export_cmd.run_build)
