"""The ``edgeret`` command line.

Subcommands come from plugins through the ``edgeret_subcommands`` hook, the
built-in ones included (`edgeret.cli.commands`). User errors print one
line and exit non-zero; a traceback only with EDGERET_DEBUG=1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from edgeret.errors import EdgeretError
from edgeret.plugin.host import Host

ENV_DEBUG = "EDGERET_DEBUG"


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    # Subcommands accept the global options too (`edgeret plugins --disable-plugin x`);
    # SUPPRESS keeps their defaults from overwriting values given before the command.
    empty = argparse.SUPPRESS if suppress else []
    parser.add_argument(
        "--disable-plugin", action="append", default=empty, metavar="NAME",
        help="do not load this plugin (repeatable; also EDGERET_DISABLE_PLUGINS=a,b)",
    )
    parser.add_argument(
        "--devices-dir", action="append", default=empty, metavar="DIR",
        help="also read device profiles from this folder (repeatable; also EDGERET_DEVICES_PATH)",
    )
    parser.add_argument(
        "--trace-hooks", action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="trace plugin hook calls on stderr (also EDGERET_TRACE_HOOKS=1)",
    )


def build_parser(host: Host) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeret", description="Retinal-imaging AI on the edge: tasks, devices, bundles."
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in sorted(host.subcommands().items()):
        command_parser = sub.add_parser(name, help=command.help, description=command.help)
        _global_options(command_parser, suppress=True)
        command.configure(command_parser)
        command_parser.set_defaults(_run=command.run)
    return parser


def _warn_failures(host: Host) -> None:
    for failure in host.failures:
        print(
            f"edgeret: warning: plugin '{failure.name}' ({failure.distribution}) "
            f"failed to load and was skipped: {failure.error}",
            file=sys.stderr,
        )


def _notes_to_stderr() -> None:
    """Conversions the user should know about (edgeret.* loggers, warning level) as one line each."""
    logger = logging.getLogger("edgeret")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("edgeret: note: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _notes_to_stderr()
    pre = argparse.ArgumentParser(add_help=False)
    _global_options(pre)
    early, _ = pre.parse_known_args(argv)
    try:
        host = Host(disabled=early.disable_plugin, trace=early.trace_hooks or None)
        parser = build_parser(host)
        _warn_failures(host)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        args.host = host
        args.devices_dir = early.devices_dir
        return int(args._run(args) or 0)
    except EdgeretError as exc:
        print(f"edgeret: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeret: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        if os.environ.get(ENV_DEBUG):
            raise
        if isinstance(exc, OSError) and exc.filename is not None:
            # a path the machine refuses (missing parent, no permission, a file where a folder should
            # be, disk full): the user's to fix, named in one line
            print(f"edgeret: error: {exc.filename}: cannot use this path ({exc.strerror or exc})",
                  file=sys.stderr)
            return 2
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"edgeret: internal error: {type(exc).__name__}: {first} "
            f"(this is a bug; set {ENV_DEBUG}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
