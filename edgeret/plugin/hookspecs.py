"""The hooks a plugin can implement, grouped by where they are used.

Each hook returns an iterable of typed registration objects (see
`edgeret.plugin.registrations`). Every hook here must be documented in
`docs/plugins.md`; a test fails otherwise.

A plugin is any module registered under the ``edgeret`` entry-point group::

    [project.entry-points.edgeret]
    my-plugin = "my_package.edgeret_plugin"

and implements hooks with ``@edgeret.hookimpl``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from edgeret.plugin.registrations import (
    BackendPlugin,
    DeviceProfileSource,
    ExporterPlugin,
    Subcommand,
    TaskPlugin,
)

PROJECT = "edgeret"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- runtime: what runs on the device and the hub -------------------------


@hookspec
def edgeret_tasks() -> Iterable[TaskPlugin]:
    """Register tasks (quality grading, DR grading, codec halves, denoise, ...).

    Return an iterable of :class:`~edgeret.plugin.registrations.TaskPlugin`. A task
    name must be unique across all installed plugins.
    """


@hookspec
def edgeret_backends() -> Iterable[BackendPlugin]:
    """Register inference backends (ONNX Runtime, OpenVINO, LiteRT, CUDA, ...).

    Return an iterable of :class:`~edgeret.plugin.registrations.BackendPlugin`.
    Backends must not import torch, and must import their runtime lazily so
    that `available()` can say why it is missing instead of failing to load.
    """


@hookspec
def edgeret_device_profiles() -> Iterable[DeviceProfileSource]:
    """Point the host at device profiles: YAML files or folders of them.

    Return an iterable of :class:`~edgeret.plugin.registrations.DeviceProfileSource`.
    Profiles are data; they are validated against the schema in
    `edgeret.devices.profiles` and a bad one is rejected naming file, field and reason.
    """


# -- build host: export and command line -----------------------------------


@hookspec
def edgeret_exporters() -> Iterable[ExporterPlugin]:
    """Register build-time exporters (ONNX, OpenVINO IR, LiteRT, TensorRT).

    Return an iterable of :class:`~edgeret.plugin.registrations.ExporterPlugin`, one
    per artifact format. Exporters may import torch, but only inside
    `export()`, never at module import.
    """


@hookspec
def edgeret_subcommands() -> Iterable[Subcommand]:
    """Add subcommands to the ``edgeret`` command line.

    Return an iterable of :class:`~edgeret.plugin.registrations.Subcommand`. The
    built-in commands (`plugins`, `devices`, `run`, ...) use this hook too.
    """
