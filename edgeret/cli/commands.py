"""The built-in subcommands, registered through the same hook third parties use.

One table for every built-in command. Importing it must stay cheap and
torch-free (the device lists commands too): each `*_cmd` module imports torch,
the exporters and the hub's server only inside the commands that need them.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeret.cli import (
    codec_cmd,
    data_cmd,
    devices_cmd,
    export_cmd,
    hub_cmd,
    plugins_cmd,
    readers_cmd,
    restore_cmd,
    run_cmd,
    train_cmd,
    upload_cmd,
)
from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import Subcommand


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
    yield Subcommand("encode", "compress an OCT B-scan or fundus photo to an .ert stream (learned codec)",
                     codec_cmd.configure_encode, codec_cmd.run_encode)
    yield Subcommand("decode", "decode an .ert stream back to an image (learned codec)",
                     codec_cmd.configure_decode, codec_cmd.run_decode)
    yield Subcommand("export", "export every task for a device profile into a verified bundle (build host)",
                     export_cmd.configure_export, export_cmd.run_export)
    yield Subcommand("verify", "check a bundle: hashes, load on the device's backend, replay golden pairs",
                     export_cmd.configure_verify, export_cmd.run_verify)
    yield Subcommand("bench", "latency, throughput, peak memory and size of a bundle's models",
                     export_cmd.configure_bench, export_cmd.run_bench)
    yield Subcommand("build", "build a Jetson bundle's TensorRT engines on the device",
                     export_cmd.configure_build, export_cmd.run_build)
    yield Subcommand("agent", "device: grade and encode each capture, upload it to the hub "
                              "(store-and-forward)",
                     upload_cmd.configure_agent, upload_cmd.run_agent)
    yield Subcommand("serve", "hub: receive .ert streams, decode, grade, write DICOM, forward to a PACS",
                     upload_cmd.configure_serve, upload_cmd.run_serve)
    yield Subcommand("hub", "hub administration: migrate-store (an older hub's JSON records into its "
                            "database)",
                     hub_cmd.configure, hub_cmd.run)
    yield Subcommand("readers", "reader app: add, list or disable the readers who may log in",
                     readers_cmd.configure, readers_cmd.run)
    yield Subcommand("denoise", "denoise images (colour fundus, or OCT with --oct) -> -o OUT; no torch",
                     restore_cmd.configure_denoise, restore_cmd.run_denoise)
    yield Subcommand("upscale", "super-resolve images x2 or x4 (--scale) -> -o OUT; tiled, no torch",
                     restore_cmd.configure_upscale, restore_cmd.run_upscale)
