"""Settings come from the environment; .env.example documents every one of them."""

from pathlib import Path

from pydantic import BaseModel

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _env_names(model: type[BaseModel], prefix: str = "LOREBOT_") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names |= _env_names(ann, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_documented_in_env_example():
    text = (ROOT / ".env.example").read_text()
    documented = {line.split("=", 1)[0] for line in text.splitlines() if line.startswith("LOREBOT_")}
    assert _env_names(Settings) - documented == set()
    assert documented - _env_names(Settings) == set(), "stale entries in .env.example"


def test_nested_settings_are_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOREBOT_SEARCH__RRF_K", "17")
    monkeypatch.setenv("LOREBOT_LLM__API_KEY", "sk-secret")
    s = Settings(_env_file=None)
    assert s.data_dir == tmp_path and s.search.rrf_k == 17
    assert "sk-secret" not in repr(s) and s.llm.api_key.get_secret_value() == "sk-secret"


def _fresh_environment(monkeypatch, tmp_path) -> Path:
    monkeypatch.delenv("LOREBOT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "lorebot"


def test_the_default_data_dir_does_not_follow_the_current_folder(monkeypatch, tmp_path):
    """Issue 15, item 2: `lorebot ask` from another folder used (and created) a new empty
    `.lorebot` there. With no `.lorebot` above, it is the per-user data dir, from anywhere, even
    with `cp .env.example .env` done in each folder."""
    user_dir = _fresh_environment(monkeypatch, tmp_path)
    for folder in ("project", "elsewhere/deeper"):
        (tmp_path / folder).mkdir(parents=True)
        monkeypatch.chdir(tmp_path / folder)
        (tmp_path / folder / ".env").write_text((ROOT / ".env.example").read_text())
        s = Settings()
        assert s.data_dir == user_dir and s.data_dir_origin == "the per-user data dir"
        assert s.index_path == user_dir / "index.sqlite3"


def test_the_nearest_lorebot_folder_above_is_the_data_dir_like_git(monkeypatch, tmp_path):
    _fresh_environment(monkeypatch, tmp_path)
    (tmp_path / "repo" / ".lorebot").mkdir(parents=True)
    (tmp_path / "repo" / "docs" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "docs" / "deep")
    s = Settings(_env_file=None)
    assert s.data_dir == tmp_path / "repo" / ".lorebot"
    assert s.data_dir_origin == f"found in {tmp_path / 'repo'}"
    monkeypatch.setenv("LOREBOT_DATA_DIR", "~/kb-data")  # the variable always wins
    s = Settings(_env_file=None)
    assert s.data_dir == Path.home() / "kb-data" and s.data_dir_origin == "LOREBOT_DATA_DIR"


def test_xdg_data_home_and_its_fallback(monkeypatch, tmp_path):
    import sys

    from bot.settings import user_data_dir

    if sys.platform in ("win32", "darwin"):
        return
    assert user_data_dir({"XDG_DATA_HOME": "/srv/data"}) == Path("/srv/data/lorebot")
    assert user_data_dir({}) == Path.home() / ".local" / "share" / "lorebot"
    assert user_data_dir({"XDG_DATA_HOME": "relative"}) == Path.home() / ".local/share/lorebot"


def test_a_bad_secret_is_named_but_never_shown():
    import pytest
    from pydantic import ValidationError

    from bot.settings import SlackSettings, describe_errors

    with pytest.raises(ValidationError) as exc:
        SlackSettings(bot_token=123)
    [line] = describe_errors(exc.value, {"LOREBOT_BOT_TOKEN": "xoxb-secret"}, {})
    assert line.startswith("LOREBOT_BOT_TOKEN=… (environment): ") and "xoxb-secret" not in line
