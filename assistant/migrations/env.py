"""Alembic's entry point: runs the migrations on the connection the store hands over (never from a config file)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the store runs migrations
    raise RuntimeError("Run migrations through assistant.store.open_store, which passes its connection.")

context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
