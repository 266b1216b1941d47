"""segment parts

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 15:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """A packaged segment's ~1 s parts (playlists.model.Parts as JSON): the HLS media playlists list each as a byte
    range of its fragment file. NULL: packaged before parts (listed whole), or not packaged yet."""
    with op.batch_alter_table('segments') as batch:
        batch.add_column(sa.Column('parts', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('segments') as batch:
        batch.drop_column('parts')
