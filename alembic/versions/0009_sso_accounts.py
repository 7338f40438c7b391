"""People who sign in through the OpenID provider, and the sign-ins under way.

A user gets a `source` ("local" for every existing one), and a person of the
provider the key of their issuer and subject (unique: one account per
person), their subject as the provider names them and when the provider last
vouched for them. `sso_logins` holds each sign-in between the redirect to the
provider and its answer, so any instance can take the answer, once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="local"))
        batch.add_column(sa.Column("sso_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("sso_subject", sa.String(255), nullable=True))
        batch.add_column(sa.Column("sso_checked_at", sa.DateTime(), nullable=True))
        batch.create_unique_constraint("uq_users_sso_key", ["sso_key"])
    op.create_table(
        "sso_logins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("return_to", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sso_logins"),
        sa.UniqueConstraint("state_hash", name="uq_sso_logins_state_hash"),
    )
    op.create_index("ix_sso_logins_expires_at", "sso_logins", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_sso_logins_expires_at", table_name="sso_logins")
    op.drop_table("sso_logins")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_sso_key", type_="unique")
        batch.drop_column("sso_checked_at")
        batch.drop_column("sso_subject")
        batch.drop_column("sso_key")
        batch.drop_column("source")
