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
