"""Alembic migrations of the store's schema (see ``assistant/store.py``); applied when the store opens."""
