"""Shared fixtures: the CRM store on SQLite and PostgreSQL (see tests/db/fixtures.py)."""

from tests.db.fixtures import db_url, pg_database, store, store_config  # noqa: F401  (re-exported fixtures)
