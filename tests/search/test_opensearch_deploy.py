"""`deploy/` stays in step with the code: commands that exist, settings that exist, torch first.

No Docker runs here (there is none on the build machines); these checks catch the drift that
would otherwise only show when someone runs `docker compose up`.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.cli.main import build_parser
from tests.bot.test_settings import _env_names
from bot.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_compose_runs_opensearch_valkey_the_bot_and_a_worker():
    services = _compose()["services"]
    assert {"opensearch", "valkey", "setup", "bot", "worker"} <= set(services)
    assert services["opensearch"]["environment"]["discovery.type"] == "single-node"
    assert "--appendonly" in services["valkey"]["command"]  # persistence
    assert services["setup"]["command"] == ["opensearch", "setup"]


def test_compose_commands_exist_or_are_kept_behind_a_profile():
    known = _subcommands()
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if name in ("opensearch", "valkey") or not command:
            continue
        if command[0] not in known:
            # Only the worker may name a command that has not landed yet, and only behind a
            # profile, so a plain `docker compose up` never starts it.
            assert name == "worker" and service.get("profiles"), (name, command)


def test_compose_sets_only_settings_that_exist():
    names = _env_names(Settings)
    for service in _compose()["services"].values():
        for key in service.get("environment") or {}:
            if key.startswith("LOREBOT_"):
                assert key in names, key


def test_the_image_installs_cpu_torch_first_and_runs_as_a_user():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    torch = dockerfile.index("torch==${TORCH_VERSION}")
    assert "ARG TORCH_VERSION=2.13.0" in dockerfile
    assert torch < dockerfile.index("pip install .")
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
