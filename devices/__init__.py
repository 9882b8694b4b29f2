"""Built-in device profiles: the YAML files in this folder.

This module is only the registration shim that points the host at them; the
profiles themselves are data (see `edgeret.devices.profiles` for the schema).
"""

from collections.abc import Iterable
from pathlib import Path

from edgeret.plugin.hookspecs import hookimpl
from edgeret.plugin.registrations import DeviceProfileSource

PROFILE_DIR = Path(__file__).resolve().parent


@hookimpl
def edgeret_device_profiles() -> Iterable[DeviceProfileSource]:
    yield DeviceProfileSource(PROFILE_DIR)
