"""Gateway API keys.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("name", sa.String(256)),
        sa.Column("user_id", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("quota", sa.BigInteger),
        sa.Column("allowed_models", sa.JSON),
        sa.Column("allowed_ips", sa.JSON),
        sa.Column("rpm", sa.Integer),
        sa.Column("rpd", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("metadata", sa.JSON, nullable=False),
    )
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])


def downgrade() -> None:
    op.drop_table("api_keys")
