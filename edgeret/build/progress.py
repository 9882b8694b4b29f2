"""A dependency-free progress bar on stderr (runs on devices too)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """`for x in Progress(items, "train", total=n): ...`; silent when disabled."""

    def __init__(self, items: Iterable[T], label: str, total: int | None = None,
                 enabled: bool = True, width: int = 28) -> None:
        self.items = items
        self.label = label
        self.total = total if total is not None else _len(items)
        self.enabled = enabled
        self.width = width
        self.postfix = ""

    def __iter__(self) -> Iterator[T]:
        start = last = time.monotonic()
        count = 0
        for count, item in enumerate(self.items, 1):
            yield item
            now = time.monotonic()
            if self.enabled and now - last > 0.5 and count != self.total:
                self._draw(count, now - start)
                last = now
        if self.enabled:
            self._draw(count, time.monotonic() - start, final=True)

    def _draw(self, count: int, elapsed: float, final: bool = False) -> None:
        if self.total:
            filled = int(self.width * count / self.total)
            bar = "#" * filled + "." * (self.width - filled)
            eta = elapsed / count * (self.total - count) if count else 0
            text = f"{self.label} [{bar}] {count}/{self.total} {elapsed:.0f}s<{eta:.0f}s"
        else:
            text = f"{self.label} {count} {elapsed:.0f}s"
        end = "\n" if final else ""
        sys.stderr.write(f"\r{text} {self.postfix}".rstrip() + end)
        sys.stderr.flush()


def _len(items: Iterable) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
