"""Alembic's environment for the hub's database: run by ``edgeret.hub.db.migrate`` with a connection
(no alembic.ini: the hub upgrades its own database at start)."""

from __future__ import annotations

from alembic import context

from edgeret.hub.db.models import Base
from edgeret.reader import models as _reader_models  # noqa: F401 - the reader app's tables (0002_reader)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
