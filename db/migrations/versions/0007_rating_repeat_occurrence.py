"""rating repeats: an occurrence number so a rater may rate a stimulus twice in one batch

Test-retest designs show each stimulus twice to each rater. Every rating is stored; the
unique key gains ``occurrence`` (1 for the first rating of a rater x stimulus in a batch, 2 for
its repeat, ...). Existing ratings are all first occurrences. How repeats are resolved for
analysis is a per-batch choice kept in ``rating_batch.mapping['repeats']`` (no column).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('occurrence', sa.Integer(), nullable=False, server_default='1')
        )
        batch_op.drop_constraint(op.f('uq_rating_batch_id_stimulus_id_rater'), type_='unique')
        batch_op.create_unique_constraint(
            op.f('uq_rating_batch_id_stimulus_id_rater_occurrence'),
            ['batch_id', 'stimulus_id', 'rater', 'occurrence'],
        )


def downgrade() -> None:
    # Repeats cannot fit the old key: refuse rather than drop a human rating.
    bind = op.get_bind()
    repeats = bind.execute(sa.text('SELECT COUNT(*) FROM rating WHERE occurrence > 1')).scalar()
    if repeats:
        raise RuntimeError(
            f'{repeats} repeated ratings would not fit the old unique key; export them first'
        )
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f('uq_rating_batch_id_stimulus_id_rater_occurrence'), type_='unique'
        )
        batch_op.create_unique_constraint(
            op.f('uq_rating_batch_id_stimulus_id_rater'), ['batch_id', 'stimulus_id', 'rater']
        )
        batch_op.drop_column('occurrence')
