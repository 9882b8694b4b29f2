"""Run the `edgeret` CLI in-process (torch and the plugins load once per test file, not per call)."""

from __future__ import annotations

import contextlib
import io

from edgeret.cli import main


def cli(*argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `edgeret ARGV`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    """The one `edgeret: error:` line a failed command must print."""
    lines = [ln for ln in err.splitlines() if ln.startswith("edgeret: error:")]
    assert len(lines) == 1, err
    return lines[0]
