"""Alembic's environment for the hub's database: run by ``edgeret.hub.db.migrate`` with a connection
(no alembic.ini: the hub upgrades its own database at start)."""

from __future__ import annotations

from alembic import context

from edgeret.hub.db.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
