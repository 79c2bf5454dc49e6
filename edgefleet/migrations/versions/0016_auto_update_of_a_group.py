"""auto-update of a deployment group

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 11:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, not a batch (see 0007); groups made before do not auto-update
    op.add_column('deployment_group', sa.Column('auto_update', sqlmodel.sql.sqltypes.AutoString(),
                                                nullable=False, server_default='off'))
    op.add_column('deployment_group', sa.Column('auto_update_since',
                                                sqlmodel.sql.sqltypes.UTCDateTime(),
                                                nullable=True))


def downgrade() -> None:
    op.drop_column('deployment_group', 'auto_update_since')  # plain DROP COLUMN, as added
    op.drop_column('deployment_group', 'auto_update')
