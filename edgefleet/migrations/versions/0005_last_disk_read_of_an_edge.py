"""last disk read of an edge

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 12:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('edge', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_disk_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('edge', schema=None) as batch_op:
        batch_op.drop_column('last_disk_at')
