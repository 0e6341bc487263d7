"""The README's Quick start and Configuration, walked as a newcomer would on a fresh machine
(issue 15): no LOREBOT_DATA_DIR, a `.env` copied from `.env.example`, commands run from more than
one folder, the usual mistakes. Asserts on what the user sees: messages and exit codes.

Stand-in embedder (the real tokenizer, hashed vectors), so it runs in seconds; the real model's
answers are covered by tests/bot/test_cli.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from bot.cli.main import main
from tests.bot.test_cli_newcomer import fake_models  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def newcomer(tmp_path, monkeypatch):
    """A fresh machine: no data dir anywhere, a project folder holding a handbook, and the
    per-user data dir under a temporary XDG_DATA_HOME."""
    for name in list(os.environ):
        if name.startswith(("LOREBOT_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    project = tmp_path / "project"
    handbook = project / "handbook"
    (handbook / "it").mkdir(parents=True)
    (handbook / "it" / "vpn.md").write_text(
        "# VPN setup\n\nInstall the VPN client, then register your hardware security key.\n")
    (handbook / "travel.md").write_text(
        "# Travel policy\n\nHotels are reimbursed up to 180 euros per night.\n")
    (handbook / "parking.txt").write_text("Visitors park on level 2 of the garage.\n")
    monkeypatch.chdir(project)
    return project


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_quick_start_as_written(newcomer, capsys, monkeypatch, fake_models):  # noqa: F811
    data = newcomer.parent / "xdg" / "lorebot"

    # `make run` without credentials is the demo: it answers from its own index.
    code, out, err = run(capsys, "run")
    assert code == 0, err
    assert "No Slack credentials" in err and "not touched" in err and "Sources:" in out
    assert (data / "demo" / "index.sqlite3").exists()

    # `cp .env.example .env`: every line of it is a valid setting, and it moves nothing.
    shutil.copy(ROOT / ".env.example", newcomer / ".env")

    # The knowledge base is empty: asking says so, where it looked, and what to run.
    code, out, err = run(capsys, "ask", "How do I set up the VPN?")
    assert code == 2 and f"{data / 'index.sqlite3'} (the per-user data dir) is empty" in err
    assert "lorebot index PATH" in err

    code, out, err = run(capsys, "index", "handbook", "--source", "handbook")
    assert code == 0, err
    assert out.startswith("added 3, updated 0, unchanged 0, removed 0, skipped 0;")

    code, out, err = run(capsys, "search", "vpn setup", "--mode", "hybrid", "-k", "5")
    assert code == 0 and "1. " in out and "vpn.md" in out
    code, out, err = run(capsys, "ask", "How do I set up the VPN?")
    assert code == 0 and "Sources:" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("How do I set up the VPN?\nexit\n"))
    code, out, err = run(capsys, "chat")
    assert code == 0 and "Sources:" in out

    # From another folder: the same knowledge base, not a new empty one (item 2).
    (newcomer.parent / "elsewhere").mkdir()
    monkeypatch.chdir(newcomer.parent / "elsewhere")
    code, out, err = run(capsys, "search", "hotel", "--json", "-k", "1")
    assert code == 0 and json.loads(out)["hits"][0]["path"].endswith("travel.md")
    assert not (newcomer.parent / "elsewhere" / ".lorebot").exists()
    monkeypatch.chdir(newcomer)

    # Indexing one file of a source that holds its folder removes nothing (item 1).
    code, out, err = run(capsys, "index", "handbook/parking.txt", "--source", "handbook")
    assert code == 0, err
    assert "removed 0" in out
    # The same folder under a second name is refused, naming the source that holds it (item 8).
    code, out, err = run(capsys, "index", "handbook", "--source", "copy")
    assert code == 2 and "handbook" in err and "Traceback" not in err

    # A typo in .env (item 3) and a bad value (item 4): one line, exit 2, before any work.
    env = (newcomer / ".env").read_text()
    (newcomer / ".env").write_text(env + "LOREBOT_SEARCH__MODEE=bm25\n")
    line = len(env.splitlines()) + 1
    code, out, err = run(capsys, "search", "vpn")
    assert code == 2 and err.strip() == (
        f"lorebot: error: LOREBOT_SEARCH__MODEE (.env line {line}) is not a lorebot setting; "
        "did you mean LOREBOT_SEARCH__DEFAULT_MODE?")
    (newcomer / ".env").write_text(env.replace("LOREBOT_SEARCH__DEFAULT_MODE=\n",
                                               "LOREBOT_SEARCH__DEFAULT_MODE=hybird\n"))
    code, out, err = run(capsys, "ask", "How do I set up the VPN?", "--json")
    assert code == 2 and "LOREBOT_SEARCH__DEFAULT_MODE=hybird (.env line" in err
    assert "input should be 'bm25', 'dense', 'hybrid' or 'rerank'" in json.loads(out)["error"]
    (newcomer / ".env").write_text(env)

    # The demo ran again: still out of the knowledge base (item 6).
    code, out, err = run(capsys, "demo")
    assert code == 0
    code, out, err = run(capsys, "sources", "--json")
    assert code == 0, err
    assert [(r["source"], r["documents"]) for r in json.loads(out)] == [("handbook", 3)]
    code, out, err = run(capsys, "search", "add my own documents", "--json")
    assert code == 0 and all("sample" not in h["doc_id"] and "/docs/" not in (h["path"] or "")
                             for h in json.loads(out)["hits"])
