"""doors: recording keys, visibility, pins

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 14:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    """Doors (server/core/doors.py): keys that may record, the key that made each video, who may watch it, and
    the admin's pin that spares it from RETENTION_DAYS (and the index RETENTION_DAYS' pass reads). Videos made
    before keys stay public and keyless."""
    op.create_table(
        'recording_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('max_live', sa.Integer(), nullable=True),
        sa.Column('quota_bytes', sa.BigInteger(), nullable=True),
        sa.Column('visibility', sa.Enum('public', 'unlisted', 'private', name='visibility', native_enum=False, create_constraint=False, length=16), nullable=False),
        sa.Column('created_at', UtcDateTime, nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('revoked_at', UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_keys')),
        sa.UniqueConstraint('name', name=op.f('uq_recording_keys_name')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_recording_keys_key_hash')),
    )
    with op.batch_alter_table('videos') as batch:
        batch.add_column(sa.Column('key_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('visibility', sa.Enum('public', 'unlisted', 'private', name='visibility', native_enum=False, create_constraint=False, length=16), server_default='public', nullable=False))
        batch.add_column(sa.Column('pinned', sa.Boolean(), server_default='0', nullable=False))
        batch.create_index(batch.f('ix_videos_key_id'), ['key_id'], unique=False)
        batch.create_foreign_key(batch.f('fk_videos_key_id_recording_keys'), 'recording_keys', ['key_id'], ['id'], ondelete='SET NULL')
        # RETENTION_DAYS' pass reads unpinned VODs in finished_at order (server/ops/reaper.py retention_query).
        batch.create_index('ix_videos_retention', ['type', 'pinned', 'finished_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('videos') as batch:
        batch.drop_index('ix_videos_retention')
        batch.drop_constraint(batch.f('fk_videos_key_id_recording_keys'), type_='foreignkey')
        batch.drop_index(batch.f('ix_videos_key_id'))
        batch.drop_column('pinned')
        batch.drop_column('visibility')
        batch.drop_column('key_id')
    op.drop_table('recording_keys')
