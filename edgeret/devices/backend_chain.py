"""Resolve a device profile's backend chain to the first backend that runs here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgeret.devices.profiles import DeviceProfile
from edgeret.errors import BackendUnavailable
from edgeret.plugin.registrations import BackendPlugin


@dataclass(frozen=True)
class BackendStep:
    name: str
    ok: bool
    reason: str


@dataclass(frozen=True)
class BackendResolution:
    profile: str
    chosen: str | None
    steps: tuple[BackendStep, ...]

    def explain(self) -> str:
        parts = [f"{s.name}: {'available' if s.ok else s.reason}" for s in self.steps]
        return "; ".join(parts)


def resolve_backends(
    profile: DeviceProfile, backends: Mapping[str, BackendPlugin]
) -> BackendResolution:
    """Walk the profile's chain in order; stop at the first available backend."""
    steps: list[BackendStep] = []
    for name in profile.backends:
        plugin = backends.get(name)
        if plugin is None:
            steps.append(BackendStep(name, False, "no backend plugin of this name is installed"))
            continue
        availability = plugin.available()
        steps.append(BackendStep(name, availability.ok, availability.reason))
        if availability.ok:
            return BackendResolution(profile.name, name, tuple(steps))
    return BackendResolution(profile.name, None, tuple(steps))


def require_backend(
    profile: DeviceProfile, backends: Mapping[str, BackendPlugin]
) -> BackendPlugin:
    resolution = resolve_backends(profile, backends)
    if resolution.chosen is None:
        raise BackendUnavailable(
            f"no backend of device '{profile.name}' can run here ({resolution.explain()})"
        )
    return backends[resolution.chosen]
