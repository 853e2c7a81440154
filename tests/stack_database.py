"""The database that a test's own processes share (a server, a worker, commands), as a fixture:
SQLite in the test's folder (the embedded default), or, when the suite runs on PostgreSQL
(DATABASE_URL, as CI's second pass does), a fresh database of its own on that server."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class StackDatabase:
    url: str  # DATABASE_URL for the processes
    kind: str  # "sqlite" or "postgresql"
    path: Path | None = None  # SQLite's file

    def rows(self, sql: str, *params) -> list[tuple]:
        """The rows of a query written with ? placeholders, read in a connection of its own."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as conn:
                return conn.execute(sql, params).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql.replace("?", "%s"), params or None).fetchall()

    @contextlib.contextmanager
    def products_held(self) -> Iterator[None]:
        """Another connection holds the products table for writing (reads go on): a state write
        waits until the block ends, as behind a long transaction."""
        if self.kind == "sqlite":
            lock = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            return
        import psycopg

        with psycopg.connect(self.url) as lock:
            lock.execute("LOCK TABLE catalog_product IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                lock.rollback()


@pytest.fixture
def stack_database(tmp_path) -> Iterator[StackDatabase]:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        path = tmp_path / "db.sqlite3"
        yield StackDatabase(f"sqlite:///{path}", "sqlite", path)
        return
    import psycopg

    base, _, _ = url.rpartition("/")
    name = f"shop_stack_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield StackDatabase(f"{base}/{name}", "postgresql")
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
