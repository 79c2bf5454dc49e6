"""url templates of a version and the address of an edge

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 23:55:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch: SQLite would rebuild the table, and dropping the old copy
    # fails while deployments refer to its rows (foreign keys are on)
    op.add_column('application_version', sa.Column('urls', sa.JSON(), nullable=False,
                                                   server_default='{}'))
    op.add_column('edge', sa.Column('address', sqlmodel.sql.sqltypes.AutoString(),
                                    nullable=True))


def downgrade() -> None:
    op.drop_column('edge', 'address')
    op.drop_column('application_version', 'urls')
