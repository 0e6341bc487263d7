"""The README and deploy files tell a newcomer the truth (issue 15, item 11)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_quick_start_says_how_to_make_a_dotenv_and_where_it_is_read():
    assert "cp .env.example .env" in README
    assert "reads `.env` from the current folder" in README


def test_no_stale_claims():
    assert "about 2 GB of disk" not in README
    assert "comes with the admin commands" not in README  # per-channel policy works
    assert "until that command lands" not in README  # `lorebot worker` exists
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    assert "does not exist yet" not in compose and "built separately" not in compose


def test_the_manifest_ships_the_simplest_path_the_readme_names():
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yml").read_text())
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "Socket Mode** (simplest" in README


def test_the_readme_says_how_to_find_a_slack_user_id_for_admin_users():
    assert "LOREBOT_SLACK__ADMIN_USERS=U" in README and "Copy member ID" in README


def test_the_data_dir_rules_are_documented_where_settings_are():
    config = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert "LOREBOT_DATA_DIR" in config and "~/.local/share/lorebot" in config
    assert "nearest existing `.lorebot`" in config
    example = (ROOT / ".env.example").read_text()
    assert "LOREBOT_DATA_DIR=\n" in example and "~/.local/share/lorebot" in example
