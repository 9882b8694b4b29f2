"""Deferred imports for registrations: keeps torch out of the device runtime."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy(module: str, attribute: str) -> Callable[..., Any]:
    """A callable that imports `module.attribute` only when it is first called.

    Task plugins use it for build-host parts (`train=lazy(f"{__name__}.recipe", "train")`)
    so registering a task never imports torch.
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(import_module(module), attribute)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"lazy:{module}.{attribute}"
    return call
