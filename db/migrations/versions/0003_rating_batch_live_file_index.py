"""rating batch duplicate guard: a unique index over the live batches of each file

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

LIVE = sa.text('deleted_at IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('rating_batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dedupe_sha256', sa.String(length=64), nullable=True))
    # Every batch guards its file, except live batches that repeat a file an earlier live batch
    # of the same study already holds (imported before the guard was atomic): they are kept,
    # marked as deliberate duplicates and noted, so nothing a user uploaded is lost.
    op.execute(
        "UPDATE rating_batch SET note = note || CASE WHEN note = '' THEN '' ELSE ' ' END"
        " || 'Same file as the earlier live batch #' || ("
        "  SELECT MIN(earlier.id) FROM rating_batch AS earlier"
        "  WHERE earlier.study_id = rating_batch.study_id AND earlier.sha256 = rating_batch.sha256"
        "  AND earlier.deleted_at IS NULL)"
        " || '; kept as a duplicate import (exclude or delete one of them).'"
        " WHERE deleted_at IS NULL AND EXISTS ("
        "  SELECT 1 FROM rating_batch AS earlier"
        "  WHERE earlier.study_id = rating_batch.study_id AND earlier.sha256 = rating_batch.sha256"
        "  AND earlier.deleted_at IS NULL AND earlier.id < rating_batch.id)"
    )
    op.execute(
        "UPDATE rating_batch SET dedupe_sha256 = sha256"
        " WHERE deleted_at IS NOT NULL OR NOT EXISTS ("
        "  SELECT 1 FROM rating_batch AS earlier"
        "  WHERE earlier.study_id = rating_batch.study_id AND earlier.sha256 = rating_batch.sha256"
        "  AND earlier.deleted_at IS NULL AND earlier.id < rating_batch.id)"
    )
    with op.batch_alter_table('rating_batch', schema=None) as batch_op:
        batch_op.create_index(
            'ux_rating_batch_live_file', ['study_id', 'dedupe_sha256'], unique=True,
            sqlite_where=LIVE, postgresql_where=LIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table('rating_batch', schema=None) as batch_op:
        batch_op.drop_index('ux_rating_batch_live_file', sqlite_where=LIVE, postgresql_where=LIVE)
        batch_op.drop_column('dedupe_sha256')
