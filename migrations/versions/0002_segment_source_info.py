"""segment source info

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 22:34:41.793885

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Keep the upload's probe on the segment, so the worker need not run ffprobe again."""
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_info', sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the stored probe (workers probe the original again)."""
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_column('source_info')
