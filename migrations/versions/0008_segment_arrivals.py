"""segment arrivals

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 08:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    """Uploads being probed (server/infra/models.py SegmentArrival): the skip rule counts a segment from its request's start.
    No foreign key to videos: its check would lock the video's row (the ORM deletes them with their video)."""
    op.create_table(
        'segment_arrivals',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('video_id', sa.Integer(), nullable=False),
        sa.Column('segment_id', sa.Integer(), nullable=False),
        sa.Column('started_at', UtcDateTime, nullable=False),
        sa.Column('expires_at', UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_segment_arrivals')),
    )
    op.create_index(op.f('ix_segment_arrivals_video_id'), 'segment_arrivals', ['video_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_segment_arrivals_video_id'), table_name='segment_arrivals')
    op.drop_table('segment_arrivals')
