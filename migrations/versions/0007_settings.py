"""settings: values every process with the database shares (the worker ticket key)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """One row per setting (server/domain/registry.py ticket_key): made by the first process that needs it."""
    op.create_table(
        'settings',
        sa.Column('name', sa.String(length=64), primary_key=True),
        sa.Column('value', sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('settings')
