"""labels of an edge

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 06:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch (see 0007); edges registered before have no labels
    op.add_column('edge', sa.Column('labels', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    op.drop_column('edge', 'labels')
