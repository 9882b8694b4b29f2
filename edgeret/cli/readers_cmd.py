"""`edgeret readers add|list|disable`: the people who may log in to the reader app (docs/reader.md).

Passwords come from standard input (one line; a terminal is asked twice, without echo) or a file, never
from the command line (it shows in ``ps`` and shell history)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeret.errors import EdgeretError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="readers_action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create a reader (password from standard input or --password-file)")
    add.add_argument("name", help="the reader's log-in name (letters, digits, . _ @ -)")
    add.add_argument("--password-file", type=Path, help="read the password from this file's first line")
    add.add_argument("--replace", action="store_true",
                     help="set a new password for an existing reader (ends their sessions)")
    listing = sub.add_parser("list", help="the readers and whether each is disabled")
    disable = sub.add_parser("disable", help="stop a reader logging in (ends their sessions)")
    disable.add_argument("name")
    for p in (add, listing, disable):
        p.add_argument("--store", type=Path, help="the hub's store folder (edgeret serve --store)")
        p.add_argument("--database", metavar="URL", help="SQLAlchemy URL (default: SQLite in --store)")


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            return args.password_file.read_text().splitlines()[0] if args.password_file.stat().st_size else ""
        except OSError as e:
            raise EdgeretError(f"--password-file {args.password_file}: {e.strerror}") from None
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != first:
            raise EdgeretError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _engine(args: argparse.Namespace):
    from edgeret.hub.db import create_engine, migrate, sqlite_url
    from edgeret.hub.store import PRIVATE_FOLDER, private_database_file

    if args.database is None and args.store is None:
        raise EdgeretError("give the hub's --store (or its --database URL)")
    if args.database is None:
        args.store.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        private_database_file(args.store)  # 0600 before SQLite creates it, as the hub does
    engine = create_engine(args.database or sqlite_url(args.store))
    migrate(engine)
    return engine


def run(args: argparse.Namespace) -> int:
    from edgeret.reader import accounts

    if args.readers_action == "add":
        accounts.check_name(args.name)
        password = _password(args)
    engine = _engine(args)
    try:
        if args.readers_action == "add":
            accounts.add_reader(engine, args.name, password, replace=args.replace)
            print(f"readers: {args.name} {'updated' if args.replace else 'added'}")
        elif args.readers_action == "disable":
            if not accounts.disable_reader(engine, args.name):
                raise EdgeretError(f"no reader named {args.name}")
            print(f"readers: {args.name} disabled")
        else:
            for name, disabled in accounts.list_readers(engine):
                print(f"{name}{'  (disabled)' if disabled else ''}")
    finally:
        engine.dispose()
    return 0
