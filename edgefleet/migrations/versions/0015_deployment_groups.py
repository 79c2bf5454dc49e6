"""deployment groups

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 07:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('deployment_group',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('edges', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('selector', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('env', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False, server_default='{}'),
    sa.Column('prune', sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('wave', sa.Integer(), nullable=False),
    sa.Column('waves', sa.Integer(), nullable=False),
    sa.Column('flow_run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['application.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deployment_group', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployment_group_name'), ['name'], unique=True)
        batch_op.create_index(batch_op.f('ix_deployment_group_application_id'),
                              ['application_id'], unique=False)
    # plain ADD COLUMN, not a batch (see 0007); deployments made before belong to no group
    op.add_column('deployment', sa.Column('group_id', sqlmodel.sql.sqltypes.AutoString(),
                                          nullable=True))
    op.create_index(op.f('ix_deployment_group_id'), 'deployment', ['group_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_deployment_group_id'), table_name='deployment')
    op.drop_column('deployment', 'group_id')  # plain DROP COLUMN, as it was added
    with op.batch_alter_table('deployment_group', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployment_group_application_id'))
        batch_op.drop_index(batch_op.f('ix_deployment_group_name'))
    op.drop_table('deployment_group')
