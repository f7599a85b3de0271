"""PostgreSQL for tests: GUARD_TEST_PG names the server (e.g. postgresql://postgres@127.0.0.1:5432/test).

Unset: PostgreSQL tests skip. Set but unreachable: they FAIL (CI must not go green without them).
Each test gets its own schema (search_path set through the URL's `options`), dropped afterwards,
so tests run in parallel and leave nothing behind.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest


def server_url() -> str:
    url = os.environ.get("GUARD_TEST_PG")
    if not url:
        pytest.skip("GUARD_TEST_PG is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        pytest.fail(f"GUARD_TEST_PG={url} is set but unreachable: {e}")
    return url


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema; yields a ledger URL whose search_path points at it."""
    import psycopg

    base = server_url()
    schema = f"guard_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
