"""A tiny knowledge base of one-chunk documents, indexed once per session through the CLI, for
the tests of `lorebot qa generate` and `lorebot export sft` (neither loads a model itself), and
the helpers both use to run the CLI and read the JSONL it writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

DOCS = {
    "vpn.md": "# VPN access\n\nConnect to the office VPN with the WireGuard client. Request a VPN "
              "profile from the IT helpdesk; profiles expire after 90 days and must be renewed "
              "in the self-service portal.\n",
    "security.md": "# Security keys\n\nEvery engineer receives a hardware security key on the "
                   "first day. Lost keys must be reported to the IT helpdesk within 24 hours so "
                   "the key can be revoked.\n",
    "travel.md": "# Travel policy\n\nEconomy class is required for flights shorter than six "
                 "hours. Hotel costs are reimbursed up to 180 euros per night when booked "
                 "through the travel desk.\n",
    "holidays.md": "# Holidays\n\nEmployees get 28 days of paid holiday per year. Unused days "
                   "can be carried over until the end of March of the following year, after "
                   "which they expire.\n",
}
SOURCE = "handbook"


@pytest.fixture(scope="session")
def qa_index(tmp_path_factory) -> Path:
    """An index file of :data:`DOCS` (source ``handbook``), built with the real model."""
    from bot.cli.main import main

    root = tmp_path_factory.mktemp("qa-corpus")
    kb = root / "kb"
    kb.mkdir()
    for name, text in DOCS.items():
        (kb / name).write_text(text, encoding="utf-8")
    data = root / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOREBOT_DATA_DIR", str(data))
        mp.chdir(root)
        assert main(["index", str(kb), "--source", SOURCE, "--json"]) == 0
    return data / "index.sqlite3"


def install_index(index: Path, data_dir: Path) -> Path:
    """Copy the session's index into a test's data dir (tests may write next to it)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = index.with_name(index.name + suffix)
        if src.exists():
            shutil.copy(src, data_dir / src.name)
    return data_dir / index.name


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    from bot.cli.main import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
