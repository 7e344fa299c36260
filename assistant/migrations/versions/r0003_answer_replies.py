"""Each issued answer keeps its whole reply and the earlier answers of its conversation, for lawyer's briefs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``reply`` (the answer as the API returned it) and ``earlier`` (answer ids before it) to ``answers``."""
    with op.batch_alter_table("answers") as batch:
        batch.add_column(sa.Column("reply", sa.JSON, nullable=True))
        batch.add_column(sa.Column("earlier", sa.JSON, nullable=True))


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("earlier")
        batch.drop_column("reply")
