"""`edgeret hub migrate-store DIR`: the hub's store administration (the hub itself is `edgeret serve`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="hub_action", metavar="ACTION", required=True)
    migrate = sub.add_parser("migrate-store", help="import an older hub's JSON records into the hub's "
                                                   "database (idempotent; the hub must not be running)")
    migrate.add_argument("store", type=Path, help="the hub's store folder (edgeret serve --store)")
    migrate.add_argument("--database", metavar="URL",
                         help="SQLAlchemy URL (default: SQLite in the store, STORE/hub.db)")


def run(args: argparse.Namespace) -> int:
    from edgeret.hub.migrate_store import migrate_store

    done = migrate_store(args.store, database_url=args.database)
    print(f"hub: {done.imported} records imported, {done.already} already in the database, "
          f"{done.skipped} skipped (not a finished commit)")
    return 0
