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
    with op.batch_alter_table('application_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allow_privileged', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('privileges', sa.JSON(), nullable=False,
                                      server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('application_version', schema=None) as batch_op:
        batch_op.drop_column('privileges')
        batch_op.drop_column('allow_privileged')
