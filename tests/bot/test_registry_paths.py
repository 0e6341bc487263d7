"""One folder (or site) under two source names would index every document twice: refused,
naming the source that holds it."""

from __future__ import annotations

import pytest

from bot.settings import RedisSettings
from bot.sources.registry import Source, SourceRegistry, SourceRegistryError
from bot.state.redis import make_client
from tests.support.valkey import redis_url, valkey_server  # noqa: F401


@pytest.fixture
async def client(redis_url):  # noqa: F811
    client = make_client(redis_url, RedisSettings(timeout_s=5))
    yield client
    await client.aclose()


async def test_the_same_folder_under_two_names_is_refused(client, tmp_path):
    reg = SourceRegistry(client)
    (tmp_path / "kb" / "sub").mkdir(parents=True)
    await reg.add(Source("handbook", "folder", str(tmp_path / "kb")))
    for location in (tmp_path / "kb", tmp_path / "kb" / "sub", tmp_path, tmp_path / "kb" / "."):
        with pytest.raises(SourceRegistryError) as info:
            await reg.add(Source("travel", "folder", str(location)))
        assert "source 'handbook'" in str(info.value) and str(tmp_path / "kb") in str(info.value)
    await reg.add(Source("site", "crawl", "https://wiki.example/"))
    with pytest.raises(SourceRegistryError, match="source 'site'"):
        await reg.add(Source("site2", "crawl", "https://WIKI.example"))
    (tmp_path / "other").mkdir()
    await reg.add(Source("other", "folder", str(tmp_path / "other")))  # a sibling is fine
    assert [s.name for s in await reg.list()] == ["handbook", "other", "site"]
