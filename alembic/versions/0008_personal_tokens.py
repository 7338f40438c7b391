"""Personal access tokens: a person's own scoped credentials, the secret kept only hashed;
and web sessions of people who are not admins.

A web session records whether an admin opened it (such a session ends when
they leave the group); every session before this revision was an admin's.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "personal_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("owner_key", sa.String(255), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("account_key", sa.String(64), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("live_key", sa.String(255), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_ip", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_personal_tokens"),
        sa.UniqueConstraint("secret_hash", name="uq_personal_tokens_secret_hash"),
        sa.UniqueConstraint("owner_key", "live_key", name="uq_personal_tokens_owner_key"),
    )
    op.create_index("ix_personal_tokens_owner_key", "personal_tokens", ["owner_key"])
    with op.batch_alter_table("ui_sessions") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("ui_sessions") as batch:
        batch.alter_column("admin", existing_type=sa.Boolean(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("ui_sessions") as batch:
        batch.drop_column("admin")
    op.drop_index("ix_personal_tokens_owner_key", table_name="personal_tokens")
    op.drop_table("personal_tokens")
