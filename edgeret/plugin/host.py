"""The plugin host: discovers plugins, collects their registrations.

Built-in and third-party plugins are found the same way, through the
``edgeret`` entry-point group. A plugin that fails to import is reported and
skipped; two plugins registering one name is an error naming both.

Environment:
  EDGERET_DISABLE_PLUGINS  comma-separated plugin names not to load
  EDGERET_TRACE_HOOKS      set to 1 to trace every hook call on stderr
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import import_module, metadata
from typing import Any, TypeVar

import pluggy

from edgeret.errors import PluginError
from edgeret.plugin import hookspecs
from edgeret.plugin.registrations import (
    BackendPlugin,
    DeviceProfileSource,
    ExporterPlugin,
    Subcommand,
    TaskPlugin,
)

ENTRY_POINT_GROUP = "edgeret"
ENV_DISABLE = "EDGERET_DISABLE_PLUGINS"
ENV_TRACE = "EDGERET_TRACE_HOOKS"

T = TypeVar("T")

# hook name -> (registration type, label used in messages and listings)
HOOK_KINDS: dict[str, tuple[type, str]] = {
    "edgeret_tasks": (TaskPlugin, "task"),
    "edgeret_backends": (BackendPlugin, "backend"),
    "edgeret_exporters": (ExporterPlugin, "exporter"),
    "edgeret_device_profiles": (DeviceProfileSource, "device-profiles"),
    "edgeret_subcommands": (Subcommand, "subcommand"),
}


@dataclass
class PluginInfo:
    """One loaded plugin and where it came from."""

    name: str
    distribution: str
    version: str
    module: str
    registers: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that could not be loaded or whose hook raised."""

    name: str
    distribution: str
    error: str


def disabled_from_env() -> set[str]:
    raw = os.environ.get(ENV_DISABLE, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class Host:
    """Owns the pluggy manager and the registries built from it."""

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        load_entry_points: bool = True,
        trace: bool | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled) | disabled_from_env()
        self.infos: dict[str, PluginInfo] = {}
        self.failures: list[LoadFailure] = []
        for name in self.disabled:
            self.pm.set_blocked(name)
        self.tracing = trace if trace is not None else bool(os.environ.get(ENV_TRACE))
        if self.tracing:
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        if load_entry_points:
            self._load_entry_points()

    # -- loading ----------------------------------------------------------

    def _load_entry_points(self) -> None:
        seen: dict[str, str] = {}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "(unknown)"
            version = ep.dist.version if ep.dist else ""
            if ep.name in self.disabled:
                continue
            if ep.name in seen and seen[ep.name] != dist:
                raise PluginError(
                    f"plugin name '{ep.name}' is used by both distribution "
                    f"'{seen[ep.name]}' and distribution '{dist}'"
                )
            if ep.name in seen:  # the same distribution seen twice on sys.path
                continue
            seen[ep.name] = dist
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                self.failures.append(LoadFailure(ep.name, dist, _describe(exc)))
                continue
            self.register(plugin, ep.name, distribution=dist, version=version)

    def register(
        self, plugin: Any, name: str, *, distribution: str = "(local)", version: str = ""
    ) -> None:
        """Register a plugin object (module or instance) under `name`."""
        if name in self.disabled:
            return
        if self.pm.has_plugin(name):
            raise PluginError(f"plugin name '{name}' is registered twice")
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self.failures.append(LoadFailure(name, distribution, _describe(exc)))
            return
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self.infos[name] = PluginInfo(name, distribution, version, module)
        self.__dict__.pop("_registry", None)  # invalidate collected registrations

    # -- collecting registrations --------------------------------------------

    @cached_property
    def _registry(self) -> dict[str, dict[str, tuple[str, Any]]]:
        registry: dict[str, dict[str, tuple[str, Any]]] = {}
        for hook_name, (kind_type, label) in HOOK_KINDS.items():
            registry[hook_name] = self._collect(hook_name, kind_type, label)
        return registry

    def _collect(self, hook_name: str, kind_type: type, label: str) -> dict[str, tuple[str, Any]]:
        found: dict[str, tuple[str, Any]] = {}
        hook = getattr(self.pm.hook, hook_name)
        all_plugins = [p for _, p in self.pm.list_name_plugin() if p is not None]
        for impl in hook.get_hookimpls():
            others = [p for p in all_plugins if p is not impl.plugin]
            # Call one plugin at a time so each registration is attributed to it,
            # going through pluggy so EDGERET_TRACE_HOOKS still sees the call.
            try:
                results = self.pm.subset_hook_caller(hook_name, remove_plugins=others)()
                items = [item for result in results for item in (result or ())]
            except Exception as exc:
                info = self.infos.get(impl.plugin_name)
                dist = info.distribution if info else "(unknown)"
                self.failures.append(LoadFailure(impl.plugin_name, dist, _describe(exc)))
                continue
            if self.tracing:
                keys = ", ".join(str(getattr(i, "name", getattr(i, "path", i))) for i in items)
                sys.stderr.write(f"  {hook_name} <- plugin '{impl.plugin_name}': [{keys}]\n")
            for item in items:
                if not isinstance(item, kind_type):
                    raise PluginError(
                        f"plugin '{impl.plugin_name}': {hook_name} returned "
                        f"{type(item).__name__}, expected {kind_type.__name__}"
                    )
                key = str(item.path) if kind_type is DeviceProfileSource else item.name
                if key in found and kind_type is not DeviceProfileSource:
                    raise PluginError(
                        f"{label} '{key}' is registered by both plugin "
                        f"'{found[key][0]}' and plugin '{impl.plugin_name}'"
                    )
                found[key] = (impl.plugin_name, item)
                if impl.plugin_name in self.infos:
                    self.infos[impl.plugin_name].registers.setdefault(label, []).append(key)
        return found

    def _items(self, hook_name: str) -> dict[str, Any]:
        return {key: item for key, (_, item) in self._registry[hook_name].items()}

    def owner(self, hook_name: str, key: str) -> str:
        return self._registry[hook_name][key][0]

    def tasks(self) -> dict[str, TaskPlugin]:
        return self._items("edgeret_tasks")

    def backends(self) -> dict[str, BackendPlugin]:
        return self._items("edgeret_backends")

    def exporters(self) -> dict[str, ExporterPlugin]:
        return self._items("edgeret_exporters")

    def subcommands(self) -> dict[str, Subcommand]:
        return self._items("edgeret_subcommands")

    def device_profile_sources(self) -> list[DeviceProfileSource]:
        return list(self._items("edgeret_device_profiles").values())

    def task(self, name: str) -> TaskPlugin:
        return _lookup(self.tasks(), name, "task")

    def backend(self, name: str) -> BackendPlugin:
        return _lookup(self.backends(), name, "backend")

    def plugin_infos(self) -> list[PluginInfo]:
        self._registry  # noqa: B018 - collecting fills in what each plugin registers
        return sorted(self.infos.values(), key=lambda i: i.name)


def _lookup(items: dict[str, T], name: str, label: str) -> T:
    if name not in items:
        known = ", ".join(sorted(items)) or "none installed"
        raise PluginError(f"unknown {label} '{name}'; known: {known}")
    return items[name]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def import_optional(module: str, extra: str) -> Any:
    """Import a heavy optional dependency, or say which extra installs it."""
    try:
        return import_module(module)
    except ImportError as exc:
        raise PluginError(
            f"this needs '{module}', which is not installed ({exc}); "
            f"install it with: pip install 'edgeret[{extra}]'"
        ) from None


_default: Host | None = None


def get_host(*, disabled: Iterable[str] = (), reload: bool = False) -> Host:
    """The process-wide host, created on first use."""
    global _default
    if _default is None or reload or set(disabled) - _default.disabled:
        _default = Host(disabled=disabled)
    return _default



def device_catalog(host: Host, extra_dirs: Iterable[str | os.PathLike] = ()):
    """All device profiles: plugins' sources, EDGERET_DEVICES_PATH, then `extra_dirs`."""
    from pathlib import Path

    from edgeret.devices.profiles import DeviceCatalog, ProfileError, env_profile_dirs

    backends = tuple(host.backends())
    profiles = []
    # A plugin's broken profile is reported and skipped like any plugin that fails: one vendor's bad
    # YAML must not stop a camera. The user's own folders (EDGERET_DEVICES_PATH, --devices-dir) stay strict.
    for owner, source in host._registry["edgeret_device_profiles"].values():
        try:
            profiles += DeviceCatalog.load([source.path], extra_backends=backends).profiles.values()
        except ProfileError as exc:
            info = host.infos.get(owner)
            failure = LoadFailure(owner, info.distribution if info else "?", str(exc))
            if failure not in host.failures:
                host.failures.append(failure)
                print(f"edgeret: warning: device profiles of plugin '{owner}' skipped: {exc}",
                      file=sys.stderr)
    strict = DeviceCatalog.load(env_profile_dirs() + [Path(d) for d in extra_dirs], extra_backends=backends)
    return DeviceCatalog([*profiles, *strict.profiles.values()])
