"""The backend a command runs on: `--backend NAME`, else the device profile's first available one."""

from __future__ import annotations

import argparse

from edgeret.devices.profiles import DEFAULT_DEVICE
from edgeret.errors import EdgeretError
from edgeret.plugin.registrations import BackendPlugin


def backend_from_args(args: argparse.Namespace) -> BackendPlugin:
    """Shared by run, encode/decode and denoise/upscale so they pick backends the same way."""
    from edgeret.devices.backend_chain import require_backend
    from edgeret.plugin.host import device_catalog

    host = args.host
    if getattr(args, "backend", None):
        backend = host.backend(args.backend)
        availability = backend.available()
        if not availability.ok:
            raise EdgeretError(f"backend '{backend.name}' is unavailable: {availability.reason}")
        return backend
    profile = device_catalog(host, getattr(args, "devices_dir", None) or ()).resolve(
        getattr(args, "device", DEFAULT_DEVICE))
    return require_backend(profile, host.backends())
