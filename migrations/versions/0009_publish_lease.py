"""publish lease

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    """Who publishes a video's playlists (server/domain/publishing.py): a lease on the row, decided by a compare-and-set,
    so publishers on several origin machines write one after the other. NULL: nobody publishes."""
    with op.batch_alter_table('videos') as batch:
        batch.add_column(sa.Column('publishing_until', UtcDateTime, nullable=True))
        batch.add_column(sa.Column('publishing_by', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('videos') as batch:
        batch.drop_column('publishing_by')
        batch.drop_column('publishing_until')
