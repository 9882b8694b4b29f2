"""Registers `edgeret encode` and `edgeret decode` (the learned codec) through the subcommand hook."""

from __future__ import annotations

from collections.abc import Iterable

from edgeret.cli import codec_cmd
from edgeret.hookspecs import hookimpl
from edgeret.registrations import Subcommand


@hookimpl
def edgeret_subcommands() -> Iterable[Subcommand]:
    yield Subcommand("encode", "compress an OCT B-scan or fundus photo to an .ert stream (learned codec)",
                     codec_cmd.configure_encode, codec_cmd.run_encode)
    yield Subcommand("decode", "decode an .ert stream back to an image (learned codec)",
                     codec_cmd.configure_decode, codec_cmd.run_decode)
