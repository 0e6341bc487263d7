"""The platform-side setting groups: Slack, Feishu/Lark, Redis, knowledge sources.

Re-exported by :mod:`bot.settings`, which holds the one ``Settings`` object."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class SlackSettings(BaseModel):
    """The Slack app. No bot token means no Slack: `make run` falls back to the terminal demo."""

    bot_token: SecretStr | None = Field(None, description="xoxb-… bot token.")
    signing_secret: SecretStr | None = Field(None, description="Verifies HTTP requests.")
    app_token: SecretStr | None = Field(None, description="xapp-… token for Socket Mode.")
    api_url: str | None = Field(None, description="Web API base URL (tests, proxies).")
    http_host: str = Field("0.0.0.0", description="`lorebot serve` listens here (--host).")
    http_port: int = Field(3000, ge=0, le=65535, description="`lorebot serve` port (--port).")
    thread_followups: bool = Field(
        True, description="Answer new messages in a thread the bot answered, without a mention."
    )
    streaming: Literal["native", "update"] = Field(
        "native", description="native: chat.startStream/appendStream/stopStream (falls back to "
        "update when Slack refuses); update: post, then chat.update."
    )
    update_interval_s: float = Field(
        1.0, ge=0.2, description="At most one streaming update per this many seconds."
    )
    progress_reaction: str = Field("mag", description="Reaction shown while searching.")
    drain_s: float = Field(
        20.0, ge=0, description="On shutdown, answers in flight get this long to finish; the "
        "askers of the rest are told to ask again.")
    rate_limit: int = Field(10, ge=0, description="Questions per user per window; 0: no limit.")
    rate_limit_window_s: int = Field(60, ge=1, description="The rate limit window in seconds.")
    wrong_source_button: bool = Field(True, description="Offer a 'Wrong source' feedback button.")
    admin_users: str = Field(
        "", description="Comma-separated Slack user ids allowed to add, remove and reindex sources."
    )
    workspace_admins_are_admins: bool = Field(
        False, description="Also treat workspace admins and owners (users.info) as lorebot admins."
    )

    @property
    def admin_ids(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.admin_users.split(",") if u.strip())


class LarkSettings(BaseModel):
    """The Feishu/Lark app (``lorebot lark serve``). No app id means no Feishu/Lark."""

    app_id: str | None = Field(None, description="cli_… app id (Credentials & Basic Info).")
    app_secret: SecretStr | None = Field(None, description="The app secret.")
    verification_token: SecretStr | None = Field(
        None, description="Event subscription verification token; HTTP callbacks carrying "
        "another are refused.")
    encrypt_key: SecretStr | None = Field(
        None, description="Event subscription encrypt key: callbacks are then AES-encrypted and "
        "signed, and unsigned ones are refused. Strongly recommended over HTTP.")
    domain: str = Field(
        "feishu", description="feishu (open.feishu.cn), lark (open.larksuite.com) or a base URL "
        "(tests, proxies).")
    http_host: str = Field("0.0.0.0", description="`lorebot lark serve` listens here (--host).")
    http_port: int = Field(3001, ge=0, le=65535, description="`lorebot lark serve` port (--port).")
    admin_open_ids: str = Field(
        "", description="Comma-separated open_ids (ou_…) allowed to run admin chat commands.")
    update_interval_s: float = Field(
        1.0, ge=1.0, description="At most one card update per this many seconds while streaming.")
    rate_limit: int = Field(10, ge=0, description="Questions per user per window; 0: no limit.")
    rate_limit_window_s: int = Field(60, ge=1, description="The rate limit window in seconds.")
    timeout_s: float = Field(10.0, gt=0, description="Seconds per Open API request.")
    drain_s: float = Field(
        20.0, ge=0, description="On shutdown, answers in flight get this long to finish; the "
        "askers of the rest are told to ask again.")

    @property
    def admin_ids(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.admin_open_ids.split(",") if u.strip())

    @property
    def base_url(self) -> str:
        return {"feishu": "https://open.feishu.cn", "lark": "https://open.larksuite.com"}.get(
            self.domain.lower(), self.domain.rstrip("/"))


class RedisSettings(BaseModel):
    """Shared state. No URL: an embedded Valkey server under the data dir."""

    url: SecretStr | None = Field(None, description="redis://… ; defaults to REDIS_URL.")
    key_prefix: str = Field("lorebot:", description="Every key lorebot writes starts so.")
    timeout_s: float = Field(1.0, gt=0, description="Socket timeout; slower means 'down'.")
    conversation_turns: int = Field(10, ge=1, description="Turns kept per conversation.")
    conversation_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="A conversation is forgotten this long after its last turn."
    )
    dedupe_ttl_s: int = Field(3600, ge=60, description="How long a seen Slack event is remembered.")
    answer_ttl_s: int = Field(
        30 * 24 * 3600, ge=60, description="How long an answer is kept for joining its feedback."
    )


class SourcesSettings(BaseModel):
    """Knowledge sources managed from Slack or `lorebot sources`, and the jobs that index them."""

    crawl_max_pages: int = Field(200, ge=1, description="Pages fetched per web source at most.")
    crawl_max_depth: int = Field(3, ge=0, description="Links followed from the start page.")
    crawl_concurrency: int = Field(4, ge=1, description="Requests in flight per web source.")
    fetch_timeout_s: float = Field(15.0, gt=0, description="Seconds per web page before giving up.")
    max_page_mb: float = Field(5.0, gt=0, description="Larger web pages are skipped and reported.")
    user_agent: str = Field("lorebot", description="User-Agent sent, and matched in robots.txt.")
    allow_private_hosts: str = Field(
        "", description="Comma-separated hosts, IPs or networks (10.0.0.0/8) a web source may "
        "reach although private, loopback or link-local (an internal wiki); '*' allows any. "
        "Empty: refused, so a URL source cannot probe the indexing host's network."
    )
    allow_other_hosts: str = Field(
        "", description="Comma-separated hosts (host or host:port) a web source's redirects and "
        "sitemap entries may lead to besides its own; empty: its own scheme, host and port only."
    )
    job_lock_ttl_s: float = Field(
        30.0, ge=1, description="A worker that stops renewing its lock this long is presumed dead; "
        "its job is requeued."
    )
    job_max_attempts: int = Field(3, ge=1, description="Runs of one job before it is failed.")
    in_process_worker: bool = Field(
        True, description="`serve`/`socket`/`run` also run a worker (set false with `lorebot worker`)."
    )
    progress_interval_s: float = Field(2.0, ge=0.1, description="Slack progress updates at most so often.")
