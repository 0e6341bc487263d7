"""`lorebot opensearch setup|migrate|status`, the SQLite-to-OpenSearch copy, and the wiring."""

from __future__ import annotations

import argparse
import json

import pytest

import bot.cli.opensearch as cli_opensearch
from bot.settings import Settings
from bot.runtime.factories import open_index
from search.errors import IndexStoreError
from search.index.opensearch import OpenSearchIndex
from search.index.opensearch_migrate import migrate_sqlite
from search.index.sqlite import SqliteIndex
from tests.search.index_contract import DIM, axis, doc_ids, entry, put
from tests.support.opensearch_fixtures import *  # noqa: F401,F403 - fixtures

ENTRIES = [
    entry("ops/deploy.md", "Run the deploy script.", "Then watch the dashboards.",
          title="Deploy guide", headings=("Ops",), path="ops/deploy.md",
          vectors=[axis(0), axis(1)]),
    entry("https://wiki/x", "The wiki page about pelicans.", source="web",
          url="https://wiki/x", vectors=[axis(2)]),
    entry("empty.md"),
    entry("zh.md", "我们的服务器部署在东京数据中心。", title="部署说明", vectors=[axis(3)]),
]


@pytest.fixture
async def sqlite_path(tmp_path):
    path = tmp_path / "index.sqlite3"
    async with SqliteIndex(path) as index:
        await put(index, *ENTRIES)
    return path


async def test_migrate_copies_documents_chunks_and_vectors(
    sqlite_path, osmem_url, open_test_index, spec_validator
):
    target = await open_test_index(osmem_url)
    summary = await migrate_sqlite(sqlite_path, target)
    assert (summary.documents, summary.chunks, summary.dimension) == (4, 4, DIM)
    assert summary.index == target.layout.physical(1)
    async with SqliteIndex(sqlite_path) as source:
        assert await target.documents() == await source.documents()
        assert await target.source_stats() == await source.source_stats()  # incl. indexed time
        for query in ("deploy script", "pelicans", "服务器", "dashboards"):
            assert [(h.chunk_id, h.text, h.title, h.headings, h.path, h.url)
                    for h in await target.bm25(query, 5)] == \
                   [(h.chunk_id, h.text, h.title, h.headings, h.path, h.url)
                    for h in await source.bm25(query, 5)]
    # Vectors travel as stored, bit for bit (they are not kept in `_source`, so look at what
    # was sent).
    sent = [line for r in spec_validator.requests if r.operation.startswith("bulk")
            for line in r.body if line.get("chunk_id") == "ops/deploy.md#1"]
    assert [line["vector"] for line in sent] == [axis(1).tolist()]


async def test_a_second_migration_replaces_the_first(sqlite_path, osmem_url, open_test_index):
    target = await open_test_index(osmem_url)
    await migrate_sqlite(sqlite_path, target)
    async with SqliteIndex(sqlite_path) as source:
        async with source.transaction() as writer:
            await writer.delete("https://wiki/x")
    summary = await migrate_sqlite(sqlite_path, target)
    assert summary.index == target.layout.physical(2)
    assert "https://wiki/x" not in await target.documents()
    assert sorted(await target.client.indices.get_alias(index=target.layout.pattern)) == [
        summary.index
    ]


async def test_an_incomplete_copy_does_not_replace_the_index(
    sqlite_path, osmem_url, open_test_index, monkeypatch
):
    target = await open_test_index(osmem_url)
    await put(target, entry("previous", "the index readers use"))
    before = (await target.describe())["index"]

    async def short_count(index=None):
        return 1, 1

    monkeypatch.setattr(target, "count_records", short_count)
    with pytest.raises(IndexStoreError, match="alias was not moved"):
        await migrate_sqlite(sqlite_path, target)
    assert (await target.describe())["index"] == before
    assert doc_ids(await target.bm25("readers", 5)) == ["previous"]


async def test_migrating_a_missing_file_says_what_to_pass(tmp_path, osmem_url, open_test_index):
    target = await open_test_index(osmem_url)
    with pytest.raises(IndexStoreError, match="--from"):
        await migrate_sqlite(tmp_path / "nope.sqlite3", target)


# ---- the commands --------------------------------------------------------------------------------


@pytest.fixture
async def cli_env(osmem_url, data_dir, monkeypatch, spec_validator):
    """Settings pointing at the osmem clone; the commands' index uses a spec-checked client."""
    monkeypatch.setenv("LOREBOT_OPENSEARCH__URL", osmem_url)
    monkeypatch.setenv("LOREBOT_OPENSEARCH__INDEX_PREFIX", "lorebot-cli")
    monkeypatch.setenv("LOREBOT_OPENSEARCH__REPLICAS", "0")
    clients = []

    def spec_checked_index(settings):
        from bot.runtime.factories import open_opensearch_index

        index = open_opensearch_index(settings)
        client = spec_checked_client(osmem_url, spec_validator)
        clients.append(client)
        return OpenSearchIndex(osmem_url, layout=index.layout, client=client)

    monkeypatch.setattr(cli_opensearch, "_index", spec_checked_index)
    yield data_dir
    for client in clients:
        await client.close()


async def _run(handler, capsys, **args) -> dict:
    assert await handler(argparse.Namespace(json=True, **args)) == 0
    return json.loads(capsys.readouterr().out)


async def test_setup_status_and_migrate_commands(cli_env, sqlite_path, capsys):
    setup = await _run(cli_opensearch.cmd_opensearch_setup, capsys, dimension=DIM, fresh=False)
    assert setup["alias"] == "lorebot-cli" and setup["index"] == "lorebot-cli-v1"
    assert setup["dimension"] == DIM and setup["template"] == "lorebot-cli"
    status = await _run(cli_opensearch.cmd_opensearch_status, capsys)
    assert status["index"] == "lorebot-cli-v1" and status["sources"] == []
    migrated = await _run(cli_opensearch.cmd_opensearch_migrate, capsys, source_path=sqlite_path)
    assert migrated["index"] == "lorebot-cli-v2" and migrated["documents"] == 4
    status = await _run(cli_opensearch.cmd_opensearch_status, capsys)
    assert status["index"] == "lorebot-cli-v2"
    assert {s["source"]: s["chunks"] for s in status["sources"]} == {"wiki": 3, "web": 1}


# ---- wiring --------------------------------------------------------------------------------------


def test_the_backend_is_chosen_by_settings(monkeypatch, data_dir):
    monkeypatch.setenv("LOREBOT_SEARCH__BACKEND", "opensearch")
    monkeypatch.setenv("LOREBOT_OPENSEARCH__URL", "https://search.internal:9200")
    monkeypatch.setenv("LOREBOT_OPENSEARCH__USERNAME", "lorebot")
    monkeypatch.setenv("LOREBOT_OPENSEARCH__PASSWORD", "s3cret-pw")
    monkeypatch.setenv("LOREBOT_OPENSEARCH__HNSW_M", "32")
    monkeypatch.setenv("LOREBOT_OPENSEARCH__SHARDS", "3")
    settings = Settings()
    index = open_index(settings)
    assert isinstance(index, OpenSearchIndex)
    assert index.layout.hnsw_m == 32 and index.layout.shards == 3
    assert index.layout.vector_mapping(384)["method"]["parameters"]["m"] == 32
    assert "s3cret-pw" not in repr(settings)
    # An explicit path still means the embedded file (migrate reads it that way).
    assert isinstance(open_index(settings, data_dir / "index.sqlite3"), SqliteIndex)


def test_a_bad_index_prefix_names_the_setting(monkeypatch, data_dir):
    monkeypatch.setenv("LOREBOT_SEARCH__BACKEND", "opensearch")
    monkeypatch.setenv("LOREBOT_OPENSEARCH__INDEX_PREFIX", "Lore Bot")
    with pytest.raises(IndexStoreError, match="LOREBOT_OPENSEARCH__INDEX_PREFIX"):
        open_index(Settings())


# ---- the whole CLI on the OpenSearch backend ------------------------------------------------------


@pytest.mark.slow
def test_index_and_search_through_the_cli_on_opensearch(osmem_url, data_dir, kb, monkeypatch,
                                                       capsys):
    from bot.cli.main import main

    monkeypatch.setenv("LOREBOT_SEARCH__BACKEND", "opensearch")
    monkeypatch.setenv("LOREBOT_OPENSEARCH__URL", osmem_url)
    monkeypatch.setenv("LOREBOT_OPENSEARCH__REPLICAS", "0")

    def run(*argv):
        code = main([*argv, "--json"])
        return code, json.loads(capsys.readouterr().out)

    code, summary = run("index", str(kb), "--source", "handbook")
    assert code == 0 and summary["added"] >= 8 and summary["chunks"] >= 8
    code, found = run("search", "如何修改数据目录的位置", "--mode", "bm25", "-k", "3")
    assert code == 0 and found["hits"][0]["title"] == "快速入门"
    code, again = run("index", str(kb), "--source", "handbook")
    assert (again["added"], again["updated"], again["removed"]) == (0, 0, 0)
    code, sources = run("sources")
    assert sources[0]["source"] == "handbook" and sources[0]["documents"] == summary["added"]
