"""prediction study scope: imported and synthetic predictions belong to one study

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('study_id', sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_prediction_stimulus_sha256_model_id_checkpoint_sha256_preprocessing_detector'), type_='unique')
        batch_op.create_index(batch_op.f('ix_prediction_study_id'), ['study_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_prediction_stimulus_sha256_model_id_checkpoint_sha256_preprocessing_detector_study_id'), ['stimulus_sha256', 'model_id', 'checkpoint_sha256', 'preprocessing', 'detector', 'study_id'])
        batch_op.create_foreign_key(batch_op.f('fk_prediction_study_id_study'), 'study', ['study_id'], ['id'], ondelete='CASCADE')
    # Rows a user imported (or the demo wrote) before this revision go to the lowest-numbered
    # (oldest) study holding their image: 0001 never recorded which study a file was imported
    # into, so when two studies hold the image this is a guess, and the other study no longer
    # shows those predictions until the file is imported there again. Computed predictions stay
    # shared (NULL).
    op.execute(
        "UPDATE prediction SET study_id = ("
        " SELECT MIN(stimulus.study_id) FROM stimulus"
        " WHERE stimulus.sha256 = prediction.stimulus_sha256)"
        " WHERE preprocessing IN ('imported', 'synthetic')"
    )


def downgrade() -> None:
    _refuse_if_imported_into_several_studies()
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_prediction_study_id_study'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_prediction_stimulus_sha256_model_id_checkpoint_sha256_preprocessing_detector_study_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_prediction_study_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_prediction_stimulus_sha256_model_id_checkpoint_sha256_preprocessing_detector'), ['stimulus_sha256', 'model_id', 'checkpoint_sha256', 'preprocessing', 'detector'])
        batch_op.drop_column('study_id')


def _refuse_if_imported_into_several_studies() -> None:
    """0001 allows one row per image and model: refuse rather than silently drop a study's copy."""
    duplicates = op.get_bind().execute(sa.text(
        "SELECT model_id, count(*) FROM prediction"
        " GROUP BY stimulus_sha256, model_id, checkpoint_sha256, preprocessing, detector"
        " HAVING count(*) > 1"
    )).all()
    if duplicates:
        models = sorted({model for model, _ in duplicates})
        raise RuntimeError(
            f"cannot downgrade below 0002: {len(duplicates)} image/model pairs ({', '.join(models)}) "
            "have predictions imported into more than one study, and 0001 holds one copy; "
            "delete them from all studies but one first"
        )
