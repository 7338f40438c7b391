"""Accounts that a name alone does not make: web sessions and refresh tokens bound to one.

Every database user gets a random `account_id`, never reused. Web sessions
record the account key of whoever signed in (see `users.account_key`) and the
folded subject, to find every spelling of a name; refresh tokens their
backend and account key. Sessions of database users are bound to the user of
their name now; refresh tokens issued before this revision keep a NULL
backend and are checked by subject only, as they were, so nobody has to log
in again (deleting a user or setting a password has always revoked them).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import secrets

import sqlalchemy as sa
from alembic import op

from tokenserver.names import name_key
from tokenserver.store.users import account_key

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _fill_account_ids() -> None:
    conn = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("account_id", sa.String))
    for (user_id,) in conn.execute(sa.select(users.c.id)).all():
        conn.execute(
            sa.update(users).where(users.c.id == user_id).values(account_id=secrets.token_hex(16))
        )


def _fill_sessions() -> None:
    conn = op.get_bind()
    sessions = sa.table(
        "ui_sessions",
        sa.column("id", sa.Integer),
        sa.column("subject", sa.String),
        sa.column("subject_key", sa.String),
        sa.column("backend", sa.String),
        sa.column("account_key", sa.String),
    )
    users = sa.table(
        "users",
        sa.column("name", sa.String),
        sa.column("account_id", sa.String),
        sa.column("password_hash", sa.String),
    )
    rows = conn.execute(sa.select(sessions.c.id, sessions.c.subject, sessions.c.backend)).all()
    for session_id, subject, backend in rows:
        key = None
        if backend == "database":
            user = conn.execute(
                sa.select(users.c.account_id, users.c.password_hash).where(users.c.name == subject)
            ).first()
            # No such user: no key, which no database account has: refused and ended.
            key = None if user is None else account_key(user.account_id, user.password_hash)
        conn.execute(
            sa.update(sessions)
            .where(sessions.c.id == session_id)
            .values(subject_key=name_key(subject), account_key=key)
        )


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("account_id", sa.String(32), nullable=True))
    _fill_account_ids()
    with op.batch_alter_table("users") as batch:
        batch.alter_column("account_id", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_users_account_id", ["account_id"])

    with op.batch_alter_table("ui_sessions") as batch:
        batch.add_column(sa.Column("subject_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("account_key", sa.String(64), nullable=True))
    _fill_sessions()
    with op.batch_alter_table("ui_sessions") as batch:
        batch.alter_column("subject_key", existing_type=sa.String(255), nullable=False)
    op.create_index("ix_ui_sessions_subject_key", "ui_sessions", ["subject_key"])

    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(sa.Column("backend", sa.String(32), nullable=True))
        batch.add_column(sa.Column("account_key", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("account_key")
        batch.drop_column("backend")
    op.drop_index("ix_ui_sessions_subject_key", table_name="ui_sessions")
    with op.batch_alter_table("ui_sessions") as batch:
        batch.drop_column("account_key")
        batch.drop_column("subject_key")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_account_id", type_="unique")
        batch.drop_column("account_id")
