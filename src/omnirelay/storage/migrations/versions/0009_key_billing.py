"""Per-key price multipliers, body logging.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An exact decimal string ("1.5"); NULL = 1. Multiplied with the user's group multiplier.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("price_multiplier", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("price_multiplier")
