"""Users, groups, the append-only ledger and redemption codes.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False, unique=True),
        sa.Column("multiplier_num", sa.BigInteger, nullable=False),
        sa.Column("multiplier_den", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("group_id", sa.String(64), sa.ForeignKey("groups.id")),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_users_group_id", "users", ["group_id"])
    op.create_table(
        "ledger",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_ledger_user_id_ts", "ledger", ["user_id", "ts"])
    op.create_table(
        "redemption_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("redeemed_by", sa.String(64)),
        sa.Column("redeemed_at", sa.Float),
        sa.Column("batch", sa.String(128)),
    )
    op.create_index("ix_redemption_codes_batch", "redemption_codes", ["batch"])


def downgrade() -> None:
    op.drop_index("ix_redemption_codes_batch", table_name="redemption_codes")
    op.drop_table("redemption_codes")
    op.drop_index("ix_ledger_user_id_ts", table_name="ledger")
    op.drop_table("ledger")
    op.drop_index("ix_users_group_id", table_name="users")
    op.drop_table("users")
    op.drop_table("groups")
