"""One account per spelling of a name; one live CI token per name; audited admin acts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

from tokenserver.names import name_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _fill_user_keys() -> None:
    conn = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("name", sa.String))
    keys = sa.table("users", sa.column("id", sa.Integer), sa.column("name_key", sa.String))
    taken: set[str] = set()
    for row in conn.execute(sa.select(users.c.id, users.c.name).order_by(users.c.id)):
        key = name_key(row.name)
        # Variants created before this revision keep working under a key of
        # their own; only new ones are refused.
        if key in taken:
            key = f"{key[:200]}/{row.id}"  # "/" is in no name, so in no other key
        taken.add(key)
        conn.execute(sa.update(keys).where(keys.c.id == row.id).values(name_key=key))


def _fill_live_keys() -> None:
    conn = op.get_bind()
    tokens = sa.table(
        "ci_tokens",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("revoked_at", sa.DateTime),
        sa.column("expires_at", sa.DateTime),
        sa.column("live_key", sa.String),
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    live = conn.execute(
        sa.select(tokens.c.id, tokens.c.name)
        .where(tokens.c.revoked_at.is_(None), tokens.c.expires_at > now)
        .order_by(tokens.c.id.desc())
    )
    taken: set[str] = set()
    for row in live:
        key = name_key(row.name)
        if key not in taken:  # the newest live token of a name keeps it
            taken.add(key)
            conn.execute(sa.update(tokens).where(tokens.c.id == row.id).values(live_key=key))


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("name_key", sa.String(255), nullable=True))
    _fill_user_keys()
    with op.batch_alter_table("users") as batch:
        batch.alter_column("name_key", existing_type=sa.String(255), nullable=False)
        batch.create_unique_constraint("uq_users_name_key", ["name_key"])

    with op.batch_alter_table("ci_tokens") as batch:
        batch.add_column(sa.Column("live_key", sa.String(255), nullable=True))
    _fill_live_keys()
    with op.batch_alter_table("ci_tokens") as batch:
        batch.create_unique_constraint("uq_ci_tokens_live_key", ["live_key"])

    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("action", sa.String(64), nullable=False, server_default="token"))
        batch.add_column(sa.Column("target", sa.String(255), nullable=False, server_default=""))
    op.create_index("ix_audit_events_action_at", "audit_events", ["action", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_action_at", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("target")
        batch.drop_column("action")
    with op.batch_alter_table("ci_tokens") as batch:
        batch.drop_constraint("uq_ci_tokens_live_key", type_="unique")
        batch.drop_column("live_key")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_name_key", type_="unique")
        batch.drop_column("name_key")
