"""privileged allowance of a version

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 19:45:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch: SQLite would rebuild the table, and dropping the old copy
    # fails while deployments refer to its rows (foreign keys are on)
    op.add_column('application_version', sa.Column('allow_privileged', sa.Boolean(),
                                                   nullable=False, server_default=sa.false()))
    op.add_column('application_version', sa.Column('privileges', sa.JSON(), nullable=False,
                                                   server_default='[]'))


def downgrade() -> None:
    op.drop_column('application_version', 'privileges')
    op.drop_column('application_version', 'allow_privileged')
