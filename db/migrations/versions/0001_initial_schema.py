"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('face_detection',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stimulus_sha256', sa.String(length=64), nullable=False),
    sa.Column('detector', sa.String(length=50), nullable=False),
    sa.Column('faces', sa.JSON(), nullable=False),
    sa.Column('chosen', sa.Integer(), nullable=True),
    sa.Column('choice_rule', sa.String(length=50), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_detection')),
    sa.UniqueConstraint('stimulus_sha256', 'detector', name=op.f('uq_face_detection_stimulus_sha256_detector'))
    )
    with op.batch_alter_table('face_detection', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_face_detection_stimulus_sha256'), ['stimulus_sha256'], unique=False)

    op.create_table('prediction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stimulus_sha256', sa.String(length=64), nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=False),
    sa.Column('checkpoint_sha256', sa.String(length=64), nullable=False),
    sa.Column('preprocessing', sa.String(length=50), nullable=False),
    sa.Column('detector', sa.String(length=50), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('label', sa.String(length=20), nullable=True),
    sa.Column('probs', sa.JSON(), nullable=True),
    sa.Column('valence', sa.Float(), nullable=True),
    sa.Column('arousal', sa.Float(), nullable=True),
    sa.Column('extras', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction')),
    sa.UniqueConstraint('stimulus_sha256', 'model_id', 'checkpoint_sha256', 'preprocessing', 'detector', name=op.f('uq_prediction_stimulus_sha256_model_id_checkpoint_sha256_preprocessing_detector'))
    )
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prediction_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_prediction_stimulus_sha256'), ['stimulus_sha256'], unique=False)

    op.create_table('registered_model',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('card', sa.JSON(), nullable=False),
    sa.Column('checkpoint_path', sa.String(length=1000), nullable=True),
    sa.Column('checkpoint_sha256', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registered_model'))
    )
    op.create_table('study',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('is_demo', sa.Boolean(), nullable=False),
    sa.Column('stimulus_key', sa.String(length=10), nullable=False),
    sa.Column('key_case_insensitive', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_study')),
    sa.UniqueConstraint('name', name=op.f('uq_study_name'))
    )
    op.create_table('rating_batch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_by', sa.String(length=200), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('layout', sa.String(length=20), nullable=False),
    sa.Column('mapping', sa.JSON(), nullable=False),
    sa.Column('scales', sa.JSON(), nullable=False),
    sa.Column('label_map', sa.JSON(), nullable=False),
    sa.Column('n_rows', sa.Integer(), nullable=False),
    sa.Column('n_rejected', sa.Integer(), nullable=False),
    sa.Column('excluded', sa.Boolean(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_rating_batch_study_id_study'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rating_batch'))
    )
    with op.batch_alter_table('rating_batch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rating_batch_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_rating_batch_study_id'), ['study_id'], unique=False)

    op.create_table('stimulus',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('media_type', sa.String(length=50), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('thumbnail', sa.LargeBinary(), nullable=False),
    sa.Column('intended_emotion', sa.String(length=20), nullable=True),
    sa.Column('precropped', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_stimulus_study_id_study'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stimulus')),
    sa.UniqueConstraint('study_id', 'path', name=op.f('uq_stimulus_study_id_path'))
    )
    with op.batch_alter_table('stimulus', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stimulus_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_stimulus_study_id'), ['study_id'], unique=False)

    op.create_table('rating',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('stimulus_id', sa.Integer(), nullable=False),
    sa.Column('rater', sa.String(length=200), nullable=False),
    sa.Column('emotion', sa.String(length=20), nullable=True),
    sa.Column('emotion_raw', sa.String(length=200), nullable=True),
    sa.Column('valence', sa.Float(), nullable=True),
    sa.Column('arousal', sa.Float(), nullable=True),
    sa.Column('valence_raw', sa.Float(), nullable=True),
    sa.Column('arousal_raw', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['rating_batch.id'], name=op.f('fk_rating_batch_id_rating_batch'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stimulus_id'], ['stimulus.id'], name=op.f('fk_rating_stimulus_id_stimulus'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rating')),
    sa.UniqueConstraint('batch_id', 'stimulus_id', 'rater', name=op.f('uq_rating_batch_id_stimulus_id_rater'))
    )
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rating_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_rating_stimulus_id'), ['stimulus_id'], unique=False)

    op.create_table('stimulus_attribute',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stimulus_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['stimulus_id'], ['stimulus.id'], name=op.f('fk_stimulus_attribute_stimulus_id_stimulus'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stimulus_attribute')),
    sa.UniqueConstraint('stimulus_id', 'key', name=op.f('uq_stimulus_attribute_stimulus_id_key'))
    )
    with op.batch_alter_table('stimulus_attribute', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stimulus_attribute_stimulus_id'), ['stimulus_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('stimulus_attribute', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stimulus_attribute_stimulus_id'))

    op.drop_table('stimulus_attribute')
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rating_stimulus_id'))
        batch_op.drop_index(batch_op.f('ix_rating_batch_id'))

    op.drop_table('rating')
    with op.batch_alter_table('stimulus', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stimulus_study_id'))
        batch_op.drop_index(batch_op.f('ix_stimulus_sha256'))

    op.drop_table('stimulus')
    with op.batch_alter_table('rating_batch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rating_batch_study_id'))
        batch_op.drop_index(batch_op.f('ix_rating_batch_sha256'))

    op.drop_table('rating_batch')
    op.drop_table('study')
    op.drop_table('registered_model')
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prediction_stimulus_sha256'))
        batch_op.drop_index(batch_op.f('ix_prediction_model_id'))

    op.drop_table('prediction')
    with op.batch_alter_table('face_detection', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_face_detection_stimulus_sha256'))

    op.drop_table('face_detection')
