"""Server-side web sessions, and a fast check value for API keys.

`web_sessions` holds one row per signed-in browser: the SHA-256 of the random token in
its `aoi_session` cookie, the key it signed in with, when it was made, expires and was
last seen, and when it ended (sign-out or the key's revocation). `api_keys.key_check`
(first 8 hex digits of the key's SHA-256) lets a wrong key that reuses a real key's
prefix be refused without scrypt; keys made earlier keep NULL and are checked by scrypt.

Revision ID: 20261207_0014
Revises: 20261202_0013
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0014"
down_revision: str | None = "20261202_0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("key_check", sa.String(length=8), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("token_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("key_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name=op.f("fk_web_sessions_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_web_sessions_token_sha256")),
    )
    op.create_index(op.f("ix_web_sessions_key_id"), "web_sessions", ["key_id"])
    op.create_index(op.f("ix_web_sessions_expires_at"), "web_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("web_sessions")
    op.drop_column("api_keys", "key_check")
