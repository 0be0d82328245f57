"""Alembic environment: runs on the connection db.migrate hands over (locked, backed up, and on
SQLite with foreign keys off); batch mode for SQLite. db.migrate commits after its checks."""

from alembic import context

from db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
