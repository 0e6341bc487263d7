"""Shared fixtures: settings pointing at a temporary data dir, and a small mixed-language corpus."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Models load from local files only: a test must never reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The test web sites listen on loopback, which web sources refuse by default (SSRF); the tests of
# that default set their own limits.
os.environ.setdefault("LOREBOT_SOURCES__ALLOW_PRIVATE_HOSTS", "127.0.0.1")
# Every test gets a fresh data dir, and the default inference backend (onnx) exports each
# model into the ONNX cache on first use: one cache for the whole run exports MiniLM once, not once
# per test (the cache key holds the export version, so a changed export is never served stale).
os.environ.setdefault("LOREBOT_SEARCH__ONNX_CACHE",
                      os.path.join(tempfile.gettempdir(), f"lorebot-test-onnx-{os.getuid()}"))


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh LOREBOT_DATA_DIR, and no stray .env or LLM from the developer's environment."""
    path = tmp_path / "data"
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(path))
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("LOREBOT_LLM__", "OPENAI_")):
            monkeypatch.delenv(name)
    return path


@pytest.fixture
def kb(tmp_path) -> Path:
    """The sample knowledge base (lorebot's docs, English and Chinese) plus a DOCX and a PDF."""
    from tests.support.broken_files import write_docx, write_pdf

    root = tmp_path / "kb"
    shutil.copytree(ROOT / "docs", root)
    write_docx(root / "onboarding.docx", [("Onboarding checklist", [
        "New engineers receive a hardware security key on their first day.",
        "The key must be registered with the IT helpdesk before using the VPN."])])
    write_pdf(root / "travel-policy.pdf", ["Travel policy",
                                          "Economy class is required for flights under six hours.",
                                          "Hotel costs are reimbursed up to 180 euros per night."])
    return root


@pytest.fixture
def tiny_beir(tmp_path) -> Path:
    """The tiny BEIR dataset of tests/support/tiny_beir.py, written to a temporary directory."""
    from tests.support.tiny_beir import write_tiny_beir

    return write_tiny_beir(tmp_path / "tiny")
