"""Federation trusts added at run time, and what an ID-token login proved, in the audit trail.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "federation_trusts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("name_key", sa.String(255), nullable=False),
        sa.Column("issuer", sa.String(1024), nullable=False),
        sa.Column("audience", sa.String(1024), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("claims", sa.Text(), nullable=False),
        sa.Column("jwks_uri", sa.String(1024), nullable=True),
        sa.Column("jwks_file", sa.String(1024), nullable=True),
        sa.Column("ca_file", sa.String(1024), nullable=True),
        sa.Column("max_age", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_federation_trusts"),
        sa.UniqueConstraint("name", name="uq_federation_trusts_name"),
        sa.UniqueConstraint("name_key", name="uq_federation_trusts_name_key"),
    )
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("detail")
    op.drop_table("federation_trusts")
