"""Table definitions (SQLAlchemy Core). Schema changes go through a migration in migrations/versions."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True, index=True),
    sa.Column("key_id", sa.String(64), nullable=False, index=True),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("provider", sa.String(128)),
    sa.Column("upstream_model", sa.String(256)),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("ttfb_ms", sa.Float),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cached_input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cache_write_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("usage_estimated", sa.Boolean, nullable=False, default=False),
    sa.Column("client_ip", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("cost", sa.BigInteger, nullable=False, default=0),
    sa.Column("unpriced", sa.Boolean, nullable=False, default=False),
    sa.Column("user_id", sa.String(64)),
    # For the usage queries, the request-log search and the IP audit (migration 0007).
    sa.Index("ix_usage_records_user_id_ts", "user_id", "ts"),
    sa.Index("ix_usage_records_key_id_ts", "key_id", "ts"),
    sa.Index("ix_usage_records_client_ip_ts", "client_ip", "ts"),
    sa.Index("ix_usage_records_model_ts", "model", "ts"),
)

responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True, index=True),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("name", sa.String(256)),
    sa.Column("user_id", sa.String(64), index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("quota", sa.BigInteger),
    sa.Column("spent", sa.BigInteger, nullable=False, default=0),
    sa.Column("allowed_models", sa.JSON),
    sa.Column("allowed_ips", sa.JSON),
    sa.Column("rpm", sa.Integer),
    sa.Column("rpd", sa.Integer),
    sa.Column("tpm", sa.Integer),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("log_bodies", sa.Boolean),
    sa.Column("price_multiplier", sa.String(32)),
)

# Request and response bodies of requests with body logging on; purged after the retention period.
request_bodies = sa.Table(
    "request_bodies",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("request", sa.LargeBinary, nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=False),
    sa.Column("request_bytes", sa.BigInteger, nullable=False),
    sa.Column("response_bytes", sa.BigInteger, nullable=False),
    sa.Column("response_content_type", sa.String(256)),
)
