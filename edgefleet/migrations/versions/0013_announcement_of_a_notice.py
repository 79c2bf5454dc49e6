"""when a notice was announced again

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch (see 0007); notices before it were never announced again
    op.add_column('notification', sa.Column('announced_again_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                                    nullable=True))


def downgrade() -> None:
    op.drop_column('notification', 'announced_again_at')
