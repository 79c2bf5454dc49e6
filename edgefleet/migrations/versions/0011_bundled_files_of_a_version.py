"""files bundled with a version

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 00:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch (see 0007); versions created before bundle no files
    op.add_column('application_version', sa.Column('files', sa.JSON(), nullable=False,
                                                   server_default='{}'))


def downgrade() -> None:
    op.drop_column('application_version', 'files')
