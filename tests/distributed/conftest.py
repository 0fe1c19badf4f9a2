"""The distributed mode's real components: ONE PostgreSQL server for the session
(tests/support/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The session's server, database `archivist` at `postgres.url`. A test that stops or kills it starts it
    again before it ends (`postgres.start()`); one that wants a clean slate makes a database of its own
    (`postgres.create_database(name)`)."""
    with running_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server
