"""Progress bars on stderr for the build host's long loops (tqdm, silent when disabled)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(items: Iterable[T], label: str, total: int | None = None,
             enabled: bool = True) -> tqdm:
    """`for x in progress_bar(items, "train", total=n): ...`; `bar.set_postfix_str("loss 0.1")` notes.

    Nothing is drawn for loops that end (or fail) within half a second (`delay`)."""
    return tqdm(items, desc=label, total=total, disable=not enabled, file=sys.stderr, mininterval=0.5,
                delay=0.5, dynamic_ncols=True)
