"""Provider channels with encrypted credentials, price overrides.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_PRICE_FIELDS = (
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
    "per_image",
    "per_audio_second",
    "per_character",
    "per_request",
)


def upgrade() -> None:
    op.create_table(
        "provider_channels",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),  # the provider's fields, never a secret
        sa.Column("secrets", sa.JSON, nullable=False),  # AES-256-GCM tokens only
        sa.Column("key_id", sa.String(16), nullable=False),  # the encryption key's id
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_provider_channels_key_id", "provider_channels", ["key_id"])
    op.create_table(
        "price_overrides",
        sa.Column("model", sa.String(256), primary_key=True),
        *(sa.Column(n, sa.String(64), nullable=n not in ("input", "output")) for n in _PRICE_FIELDS),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("price_overrides")
    op.drop_index("ix_provider_channels_key_id", table_name="provider_channels")
    op.drop_table("provider_channels")
