"""Usage owners and indexes for usage queries, request-log search and the IP audit; opt-in body logs.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_usage_records_user_id_ts": ["user_id", "ts"],
    "ix_usage_records_key_id_ts": ["key_id", "ts"],
    "ix_usage_records_client_ip_ts": ["client_ip", "ts"],
    "ix_usage_records_model_ts": ["model", "ts"],
}


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("user_id", sa.String(64)))
    # Records written before this migration belong to their key's current owner.
    op.execute(
        "UPDATE usage_records SET user_id = "
        "(SELECT api_keys.user_id FROM api_keys WHERE api_keys.id = usage_records.key_id)"
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "usage_records", columns)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("log_bodies", sa.Boolean))
    op.create_table(
        "request_bodies",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("request", sa.LargeBinary, nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("request_bytes", sa.BigInteger, nullable=False),
        sa.Column("response_bytes", sa.BigInteger, nullable=False),
        sa.Column("response_content_type", sa.String(256)),
    )
    op.create_index("ix_request_bodies_ts", "request_bodies", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_request_bodies_ts", table_name="request_bodies")
    op.drop_table("request_bodies")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("log_bodies")
    for name in _INDEXES:
        op.drop_index(name, table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("user_id")
