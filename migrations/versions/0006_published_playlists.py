"""published playlists

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 15:05:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """What the playlist files in the media tree show (server/domain/publishing.py): the reaper republishes a video
    whose files lag its revision. NULL: never published (existing videos are published by the reaper)."""
    with op.batch_alter_table('videos') as batch:
        batch.add_column(sa.Column('published_revision', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('published_key', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('videos') as batch:
        batch.drop_column('published_key')
        batch.drop_column('published_revision')
