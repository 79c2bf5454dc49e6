"""mode of an edge (push or pull)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 07:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch (see 0007); edges registered before are push edges
    op.add_column('edge', sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(),
                                    nullable=False, server_default='push'))


def downgrade() -> None:
    op.drop_column('edge', 'mode')
