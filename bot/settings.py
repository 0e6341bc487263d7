"""All configuration, read once from the environment and `.env` (prefix ``LOREBOT_``).

Nested groups use a double underscore: ``LOREBOT_SEARCH__RRF_K=60``. Only ``bot/`` reads the
environment; ``search/`` receives plain values. ``.env`` is read from the current folder.

A ``LOREBOT_`` name that is no setting (a typo) and a value a setting does not allow are both a
:class:`SettingsError`: one line per problem naming the variable, where it came from (the
environment or a ``.env`` line) and what is allowed.

The data dir: ``LOREBOT_DATA_DIR`` when set, else the nearest ``.lorebot`` folder in the current
folder or above it (as git finds ``.git``), else the per-user data dir (``$XDG_DATA_HOME/lorebot``,
by default ``~/.local/share/lorebot``). It never depends on where a command happens to run.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.sources import ENV_FILE_SENTINEL

from bot.settings_platforms import (  # noqa: F401 - the groups are used from here
    LarkSettings,
    RedisSettings,
    SlackSettings,
    SourcesSettings,
)
from bot.settings_retrieval import (  # noqa: F401 - the groups are used from here
    AnswerSettings,
    FinetuneSettings,
    LLMSettings,
    OpenSearchSettings,
    SearchMode,
    SearchSettings,
)
from bot.settings_sources import (  # noqa: F401 - SettingsError and the helpers are used from here
    SettingsError,
    describe_errors,
    locate_data_dir,
    read_dotenv,
    setting_names,
    unknown_names,
    user_data_dir,
)


class Settings(BaseSettings):
    """The one settings object; `bot.runtime.services` builds every service from it."""

    model_config = SettingsConfigDict(
        env_prefix="LOREBOT_",
        env_nested_delimiter="__",
        env_ignore_empty=True,  # `KEY=` in .env means "use the default", as .env.example shows
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path | None = Field(
        None, description="Everything lorebot writes lives here. Unset: the nearest `.lorebot` "
        "in the current folder or above, else the per-user data dir (see locate_data_dir)."
    )
    search: SearchSettings = SearchSettings()
    llm: LLMSettings = LLMSettings()
    answer: AnswerSettings = AnswerSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    slack: SlackSettings = SlackSettings()
    lark: LarkSettings = LarkSettings()
    redis: RedisSettings = RedisSettings()
    finetune: FinetuneSettings = FinetuneSettings()
    sources: SourcesSettings = SourcesSettings()

    _data_dir_origin: str = PrivateAttr("LOREBOT_DATA_DIR")

    def __init__(self, **values) -> None:
        env_file = values.get("_env_file", ENV_FILE_SENTINEL)
        if env_file is ENV_FILE_SENTINEL:
            env_file = self.model_config.get("env_file")
        dotenv = read_dotenv(env_file)
        problems = unknown_names(setting_names(type(self)), os.environ, dotenv)
        if problems:
            raise SettingsError(problems)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc, os.environ, dotenv)) from None

    def model_post_init(self, context: object, /) -> None:
        if self.data_dir is None:
            self.data_dir, self._data_dir_origin = locate_data_dir()
        else:
            self.data_dir = self.data_dir.expanduser().absolute()

    @property
    def data_dir_origin(self) -> str:
        """How the data dir was chosen, for messages: "LOREBOT_DATA_DIR", "found in …" or
        "the per-user data dir"."""
        return self._data_dir_origin

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.sqlite3"
