"""Alembic migrations (run by `thred-bridge migrate`)."""
