"""`lorebot sources` with Redis down: a clear warning and a partial exit code, not an empty
"No sources yet" that looks like the registry was lost."""

from __future__ import annotations

import json

from bot.cli.main import main


def test_sources_with_redis_down_warns_and_exits_partial(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LOREBOT_REDIS__URL", f"unix://{tmp_path}/nobody.sock?password=s3cret")
    monkeypatch.setenv("LOREBOT_REDIS__TIMEOUT_S", "0.2")
    assert main(["sources"]) == 1
    out, err = capsys.readouterr()
    assert "No sources yet" not in out and "No sources in the index." in out
    [warning] = [line for line in err.splitlines() if line.startswith("lorebot: warning:")]
    assert "source registry" in warning and "does not answer" in warning
    assert "s3cret" not in err and "password=***" in warning

    assert main(["sources", "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == [] and "does not answer" in err
