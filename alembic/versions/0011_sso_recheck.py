"""What the server needs to ask the OpenID provider about a person again without them.

`sso_refresh` is the provider's refresh token from the person's last
sign-in (or the one it rotated to since), sealed with a key derived from
the client secret; `sso_recheck_until` is a short lease, so that of several
instances only one asks the provider about a person at a time (a provider
that rotates refresh tokens would take a second use of one as theft).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("sso_refresh", sa.Text(), nullable=True))
        batch.add_column(sa.Column("sso_recheck_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("sso_recheck_until")
        batch.drop_column("sso_refresh")
