"""parameters of a version

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 23:55:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch (see 0007); versions created before have none recorded
    op.add_column('application_version', sa.Column('parameters', sa.JSON(), nullable=False,
                                                   server_default='[]'))


def downgrade() -> None:
    op.drop_column('application_version', 'parameters')
