"""rating batch import state: a batch imported in chunks stays invisible until it is complete

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Adding columns needs no table rebuild; every existing batch was imported in one
    # transaction, so it is complete: the server default makes it active.
    with op.batch_alter_table('rating_batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'import_state', sa.String(length=20), nullable=False, server_default=sa.text("'active'"),
        ))
        batch_op.add_column(sa.Column('import_heartbeat', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Half imports cannot be represented without the state: drop them (they were never visible).
    op.execute(
        "DELETE FROM rating WHERE batch_id IN"
        " (SELECT id FROM rating_batch WHERE import_state != 'active')"
    )
    op.execute("DELETE FROM rating_batch WHERE import_state != 'active'")
    with op.batch_alter_table('rating_batch', schema=None) as batch_op:
        batch_op.drop_column('import_heartbeat')
        batch_op.drop_column('import_state')
