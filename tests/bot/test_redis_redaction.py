"""Redis URLs reach the log without their passwords, wherever the URL carries one."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from bot.settings import RedisSettings, Settings
from bot.state.redis import open_redis, redacted

SECRET = "hunter2-s3cret"


@pytest.mark.parametrize(("url", "shown"), [
    (f"redis://:{SECRET}@cache:6379/0", "redis://***@cache:6379/0"),
    (f"redis://app:{SECRET}@cache/0", "redis://app:***@cache/0"),
    (f"redis://{SECRET}@cache", "redis://***@cache"),
    (f"redis://cache:6379/0?password={SECRET}&db=1", "redis://cache:6379/0?password=***&db=1"),
    (f"rediss://u:{SECRET}@cache?Password={SECRET}", "rediss://u:***@cache?Password=***"),
    (f"unix:///run/valkey.sock?db=0&password={SECRET}", "unix:///run/valkey.sock?db=0&password=***"),
    (f"redis://cache?pass%77ord={SECRET}", "redis://cache?pass%77ord=***"),
    ("redis://cache:6379/0", "redis://cache:6379/0"),
    ("unix:///run/valkey.sock", "unix:///run/valkey.sock"),
    (f"redis://[::1:{SECRET}", "<a Redis URL that does not parse>"),
])
def test_redacted_hides_passwords_in_userinfo_and_query(url, shown):
    assert redacted(url) == shown
    assert SECRET not in redacted(url)


async def test_a_redis_that_does_not_answer_is_logged_without_its_password(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"unix://{tmp_path}/nobody.sock?password={SECRET}"
    settings = Settings(_env_file=None, data_dir=tmp_path,
                        redis=RedisSettings(url=SecretStr(url), timeout_s=0.2))
    handle = await open_redis(settings, environ={})
    await handle.aclose()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "does not answer" in logged and "password=***" in logged
    assert SECRET not in logged
