"""Device profiles: data, not code.

A profile is a YAML file validated against `SCHEMA` below. Built-in profiles
live in the top-level `devices/` folder; users add their own with
``--devices-dir DIR``, the ``EDGERET_DEVICES_PATH`` environment variable
(folders separated by the OS path separator) or a plugin implementing
``edgeret_device_profiles``. A bad profile is rejected naming the file, the
field and the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeret.errors import EdgeretError, ProfileError
from edgeret.plugin.registrations import PRECISIONS

ENV_DEVICES_PATH = "EDGERET_DEVICES_PATH"
SCHEMA_VERSION = 1

CPU_ARCHES = ("x86_64", "arm64")
ACCELERATORS = ("none", "cuda-gpu", "intel-gpu", "intel-npu", "edgetpu", "npu")
# Backends a profile may name even when no plugin for them is installed here
# (a Jetson profile must load on an x86 build host).
KNOWN_BACKENDS = ("tensorrt", "cuda", "openvino", "litert", "onnxruntime")
RUNTIMES = ("jetpack", "cuda", "tensorrt", "openvino", "litert", "onnxruntime")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


# The embedded default: what `edgeret run/encode/denoise` use without --device.
DEFAULT_DEVICE = "x86-cpu"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    cpu_arch: str
    accelerator: str
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    memory_budget_mb: int
    aliases: tuple[str, ...] = ()
    description: str = ""
    default_precision: str = "fp32"
    runtime_versions: Mapping[str, str] = field(default_factory=dict)
    input_sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_sizes"] = {k: list(v) for k, v in self.input_sizes.items()}
        data["runtime_versions"] = dict(self.runtime_versions)
        for key in ("backends", "precisions", "aliases"):
            data[key] = list(data[key])
        return data


# field -> (required, checker). Checkers return the cleaned value or raise ValueError.
def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"must be a lowercase name like 'jetson-orin-nano', got {value!r}")
    return value


def _choice(options: tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return value

    return check


def _list_of(check: Any, *, non_empty: bool) -> Any:
    def check_list(value: Any) -> tuple:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, got {type(value).__name__}")
        if non_empty and not value:
            raise ValueError("must not be empty")
        cleaned = []
        for i, item in enumerate(value):
            try:
                cleaned.append(check(item))
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("has duplicates")
        return tuple(cleaned)

    return check_list


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    return value


def _runtime_versions(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of runtime -> version, got {type(value).__name__}")
    out = {}
    for key, version in value.items():
        if key not in RUNTIMES:
            raise ValueError(f"unknown runtime {key!r}; known: {', '.join(RUNTIMES)}")
        if not isinstance(version, str | int | float) or isinstance(version, bool):
            raise ValueError(f"{key}: version must be a string like '1.20', got {version!r}")
        out[key] = str(version)
    return out


def _input_sizes(value: Any) -> dict[str, tuple[int, int]]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of task -> [height, width], got {type(value).__name__}")
    out = {}
    for task, size in value.items():
        if (
            not isinstance(size, list)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise ValueError(f"{task}: must be [height, width] of positive integers, got {size!r}")
        out[_name(task)] = (size[0], size[1])
    return out


SCHEMA: dict[str, tuple[bool, Any]] = {
    "schema_version": (True, _choice((SCHEMA_VERSION,))),
    "name": (True, _name),
    "aliases": (False, _list_of(_name, non_empty=False)),
    "description": (False, _text),
    "cpu_arch": (True, _choice(CPU_ARCHES)),
    "accelerator": (True, _choice(ACCELERATORS)),
    "backends": (True, None),  # checked against known + installed backends below
    "precisions": (True, _list_of(_choice(PRECISIONS), non_empty=True)),
    "default_precision": (False, _choice(PRECISIONS)),
    "runtime_versions": (False, _runtime_versions),
    "memory_budget_mb": (True, _positive_int),
    "input_sizes": (False, _input_sizes),
}


def parse_profile(
    data: Any, source: str | Path, extra_backends: Iterable[str] = ()
) -> DeviceProfile:
    """Validate one profile's parsed YAML; raise ProfileError(file, field, reason)."""
    if not isinstance(data, dict):
        raise ProfileError(source, "(top level)", "a profile must be a YAML mapping")
    for key in data:
        if key not in SCHEMA:
            raise ProfileError(source, str(key), f"unknown field; allowed: {', '.join(SCHEMA)}")
    backends_ok = tuple(dict.fromkeys((*KNOWN_BACKENDS, *extra_backends)))
    cleaned: dict[str, Any] = {}
    for key, (required, check) in SCHEMA.items():
        if key not in data:
            if required:
                raise ProfileError(source, key, "missing (required)")
            continue
        if key == "backends":
            check = _list_of(_choice(backends_ok), non_empty=True)
        try:
            cleaned[key] = check(data[key])
        except ValueError as exc:
            raise ProfileError(source, key, str(exc)) from None
    cleaned.pop("schema_version")
    default = cleaned.get("default_precision", cleaned["precisions"][0])
    if default not in cleaned["precisions"]:
        raise ProfileError(source, "default_precision", f"{default!r} is not in precisions")
    cleaned["default_precision"] = default
    return DeviceProfile(**cleaned, source=str(source))


def load_profile_file(path: Path, extra_backends: Iterable[str] = ()) -> DeviceProfile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(path, "(file)", f"cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProfileError(path, "(yaml)", f"invalid YAML{where}: {problem}") from None
    return parse_profile(data, path, extra_backends)


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    if path.is_file():
        return [path]
    raise EdgeretError(f"{path}: device profile folder or file does not exist")


def env_profile_dirs() -> list[Path]:
    raw = os.environ.get(ENV_DEVICES_PATH, "")
    return [Path(p) for p in raw.split(os.pathsep) if p]


class DeviceCatalog:
    """All known profiles by name, with aliases resolved."""

    def __init__(self, profiles: Iterable[DeviceProfile]) -> None:
        self.profiles: dict[str, DeviceProfile] = {}
        self.aliases: dict[str, str] = {}
        for profile in profiles:
            for key in (profile.name, *profile.aliases):
                owner = self.profiles.get(key) or self.profiles.get(self.aliases.get(key, ""))
                if owner:
                    raise ProfileError(
                        profile.source, "name" if key == profile.name else "aliases",
                        f"'{key}' is already defined by {owner.source}",
                    )
                if key != profile.name:
                    self.aliases[key] = profile.name
            self.profiles[profile.name] = profile

    @classmethod
    def load(
        cls, sources: Iterable[Path], extra_backends: Iterable[str] = ()
    ) -> DeviceCatalog:
        extra = tuple(extra_backends)
        files = [f for src in sources for f in _yaml_files(Path(src))]
        return cls(load_profile_file(f, extra) for f in files)

    def resolve(self, name: str) -> DeviceProfile:
        key = self.aliases.get(name, name)
        if key not in self.profiles:
            known = ", ".join(
                p.name + (f" (alias {', '.join(p.aliases)})" if p.aliases else "")
                for p in sorted(self.profiles.values(), key=lambda p: p.name)
            )
            raise EdgeretError(f"unknown device '{name}'; known devices: {known}")
        return self.profiles[key]

    def __iter__(self):
        return iter(sorted(self.profiles.values(), key=lambda p: p.name))
