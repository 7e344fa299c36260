"""The feedback table, as the store kept it before migrations (an existing one is adopted unchanged).

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``feedback`` unless a database from before migrations already has it."""
    if sa.inspect(op.get_bind()).has_table("feedback"):
        return
    op.create_table(
        "feedback",
        sa.Column("answer_id", sa.Text, primary_key=True),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("vote", sa.Text, sa.CheckConstraint("vote IN ('up', 'down')"), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop ``feedback``."""
    op.drop_table("feedback")
