"""Issued answers (so any replica can accept feedback on them) and the question log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``answers`` and ``question_log``."""
    op.create_table(
        "answers",
        sa.Column("answer_id", sa.String(32), primary_key=True),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "question_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("asked_at", sa.String(32), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("covered", sa.Boolean, nullable=False),
        sa.Column("sections", sa.JSON, nullable=False),
        sa.Column("triggers", sa.JSON, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
    )
    op.create_index("question_log_covered", "question_log", ["covered", "id"])


def downgrade() -> None:
    """Drop ``question_log`` and ``answers``."""
    op.drop_table("question_log")
    op.drop_table("answers")
