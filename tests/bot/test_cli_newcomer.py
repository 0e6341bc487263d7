"""A newcomer's first hour (issue 15): every mistake explained in one line, a data dir that does
not follow the current folder, a demo that stays out of the knowledge base, Ctrl-C that is quick
and says the index is unchanged, progress that follows the embedding.

No real model: the embedder is a stand-in with the real tokenizer (chunking) and hashed vectors,
so these run in seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bot.cli.main import main
from search.embedding import SentenceTransformerEmbedder

ROOT = Path(__file__).resolve().parents[2]
DIM = 384


class HashEmbedder(SentenceTransformerEmbedder):
    """The real tokenizer (chunking works as in production) and a hashed unit vector per text."""

    @property
    def dim(self) -> int:
        return DIM

    def warm_up(self) -> None:
        pass

    def encode(self, texts):
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, DIM), dtype=np.float32)


@pytest.fixture
def fake_models(monkeypatch):
    from bot.runtime import services

    monkeypatch.setattr(services, "new_embedder",
                        lambda settings, model: HashEmbedder(model, batch_size=8))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# -- item 3: a misspelled LOREBOT_ name is an error naming the closest setting -------------------


@pytest.mark.parametrize("name, closest", [
    ("LOREBOT_SEARCH__MODEE", "LOREBOT_SEARCH__DEFAULT_MODE"),
    ("LOREBOT_SERCH__TOP_K", "LOREBOT_SEARCH__TOP_K"),
    ("LOREBOT_SEARCH_TOP_K", "LOREBOT_SEARCH__TOP_K"),
    ("LOREBOT_DATADIR", "LOREBOT_DATA_DIR"),
])
def test_an_unknown_setting_in_the_environment_names_the_closest_one(
        capsys, data_dir, monkeypatch, name, closest):
    monkeypatch.setenv(name, "bm25")
    code, _out, err = run(capsys, "search", "anything")
    assert code == 2
    assert error_lines(err) == [
        f"lorebot: error: {name} (environment) is not a lorebot setting; did you mean {closest}?"]


def test_an_unknown_setting_in_dotenv_names_its_line(capsys, data_dir):
    Path(".env").write_text("# mine\nLOREBOT_SEARCH__TOP_K=3\nLOREBOT_SERCH__RRF_K=10\n")
    code, out, err = run(capsys, "ask", "anything", "--json")
    assert code == 2
    assert "LOREBOT_SERCH__RRF_K (.env line 3)" in err and "LOREBOT_SEARCH__RRF_K?" in err
    assert "Traceback" not in err
    assert "LOREBOT_SERCH__RRF_K" in json.loads(out)["error"]


# -- item 4: a bad value is one line: the variable, where from, the value, what is allowed -------


def test_an_invalid_value_is_one_line_naming_variable_value_and_what_is_allowed(
        capsys, data_dir, monkeypatch):
    monkeypatch.setenv("LOREBOT_SEARCH__DEFAULT_MODE", "hybird")
    code, _out, err = run(capsys, "search", "anything")
    assert code == 2
    assert error_lines(err) == [(
        "lorebot: error: LOREBOT_SEARCH__DEFAULT_MODE=hybird (environment): input should be "
        "'bm25', 'dense', 'hybrid' or 'rerank'")]


def test_an_invalid_value_in_dotenv_names_its_line_and_json_gets_json(capsys, data_dir):
    Path(".env").write_text("LOREBOT_SEARCH__TOP_K=5\n\nLOREBOT_SEARCH__TOP_K=0\n")
    code, out, err = run(capsys, "ask", "anything", "--json")
    assert code == 2
    assert error_lines(err) == [(
        "lorebot: error: LOREBOT_SEARCH__TOP_K=0 (.env line 3): input should be greater than or "
        "equal to 1")]
    assert json.loads(out) == {"error": err.splitlines()[0].removeprefix("lorebot: error: ")}


@pytest.mark.parametrize("argv", [("ask", ""), ("ask", "   "), ("search", "")])
def test_an_empty_question_is_one_line(capsys, data_dir, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and len(error_lines(err)) == 1 and "is empty" in err
    code, out, err = run(capsys, *argv, "--json")
    assert code == 2 and "is empty" in json.loads(out)["error"]


# -- item 2: asking an empty index says so, where it looked and what to run ---------------------


def test_asking_an_empty_index_says_where_it_looked_and_what_to_run(capsys, data_dir):
    started = time.perf_counter()
    code, _out, err = run(capsys, "ask", "What is the travel policy?")
    assert code == 2
    assert time.perf_counter() - started < 5  # no model loaded for nothing
    (line,) = error_lines(err)
    assert "is empty" in line and str(data_dir / "index.sqlite3") in line
    assert "lorebot index PATH" in line and "lorebot demo" in line


# -- item 10: the command line ------------------------------------------------------------------


@pytest.mark.parametrize("k", ["0", "-3"])
def test_k_must_be_positive(capsys, data_dir, k):
    with pytest.raises(SystemExit) as exit_:
        main(["search", "anything", "-k", k])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "-k" in err and "must be 1 or more" in err


def test_a_bad_flag_prints_the_usage_of_its_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["search", "anything", "--bogus"])
    err = capsys.readouterr().err
    assert err.startswith("usage: lorebot search") and "unrecognized arguments: --bogus" in err
    with pytest.raises(SystemExit):
        main(["sources", "remove", "x", "--bogus"])
    assert capsys.readouterr().err.startswith("usage: lorebot sources remove")


def test_verbose_works_after_the_subcommand_too(capsys, data_dir):
    from bot.cli.main import build_parser, parse_args

    parser = build_parser()
    assert parse_args(parser, ["-v", "search", "x"]).verbose is True
    assert parse_args(parser, ["search", "x", "-v"]).verbose is True
    assert parse_args(parser, ["search", "x"]).verbose is False


def test_positional_arguments_and_every_command_have_help(capsys):
    from bot.cli.main import build_parser

    for command, positional in (("index", "PATH"), ("search", "query"), ("ask", "question")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        section = text.split("positional arguments:")[1].splitlines()
        line = next(x for x in section if x.strip().startswith(positional))
        assert len(line.split()) > 1, f"{command} {positional} has no help"
    parser = build_parser()
    action = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    for name in ("chat", "socket", "worker"):
        assert action.choices[name].description, name


@pytest.mark.parametrize("device, says", [
    ("cuda", "LOREBOT_SEARCH__DEVICE=cpu"), ("gpu", "is not a torch device")])
def test_a_device_this_machine_lacks_is_blamed_not_the_model(
        capsys, data_dir, monkeypatch, tmp_path, device, says):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("# A\n\nThe cafeteria opens at noon.\n")
    monkeypatch.setenv("LOREBOT_SEARCH__DEVICE", device)
    code, _out, err = run(capsys, "index", str(tmp_path / "kb"))
    assert code == 2
    (line,) = error_lines(err)
    assert f"LOREBOT_SEARCH__DEVICE={device}" in line and says in line
    assert "EMBEDDING_MODEL" not in line


def test_run_with_only_the_bot_token_names_the_missing_token(capsys, data_dir, monkeypatch):
    monkeypatch.setenv("LOREBOT_SLACK__BOT_TOKEN", "xoxb-1")
    code, _out, err = run(capsys, "run")
    assert code == 2
    assert "LOREBOT_SLACK__APP_TOKEN" in err and "LOREBOT_SLACK__SIGNING_SECRET" in err
    assert "demo" not in err
    monkeypatch.delenv("LOREBOT_SLACK__BOT_TOKEN")
    monkeypatch.setenv("LOREBOT_SLACK__APP_TOKEN", "xapp-1")
    code, _out, err = run(capsys, "run")
    assert code == 2 and "LOREBOT_SLACK__BOT_TOKEN" in err and "missing" in err


def test_search_in_a_source_that_does_not_exist_says_so(capsys, data_dir, kb, fake_models):
    code, _out, err = run(capsys, "index", str(kb), "--source", "handbook")
    code, _out, err = run(capsys, "search", "hotel", "--source", "nosuch")
    assert code == 2
    assert error_lines(err) == ["lorebot: error: no such source: nosuch (indexed: handbook)"]


def test_the_index_summary_and_its_lines_use_one_word(capsys, data_dir, tmp_path, fake_models):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("# A\n\nThe cafeteria opens at noon.\n")
    (tmp_path / "kb" / "b.pdf").write_bytes(b"not a pdf")
    code, out, _err = run(capsys, "index", str(tmp_path / "kb"))
    assert code == 1
    assert "skipped 1;" in out and "  skipped " in out and "failed" not in out


# -- item 6: the demo never touches the knowledge base -----------------------------------------


async def _sources(settings) -> dict[str, int]:
    from bot.runtime.factories import open_index

    index = open_index(settings)
    try:
        return {s.source: s.documents for s in await index.source_stats()}
    finally:
        await index.close()


def test_the_demo_keeps_out_of_the_knowledge_base(capsys, data_dir, kb, fake_models):
    from bot.settings import Settings

    (kb / "extra").mkdir()
    (kb / "extra" / "parking.md").write_text("# Parking\n\nVisitors park on level 2.\n")
    code, out, err = run(capsys, "index", str(kb / "extra"), "--source", "handbook")
    assert code == 0
    for argv in (("demo",), ("run",)):  # `make run` without credentials is the demo
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert "Sources:" in out and "not touched" in err
    assert asyncio.run(_sources(Settings())) == {"handbook": 1}
    assert (data_dir / "demo" / "index.sqlite3").exists()


def test_the_slack_bot_offers_the_sample_once(capsys, data_dir, fake_models):
    """`lorebot run` with credentials on a brand-new knowledge base indexes the sample docs (a
    public source); after `lorebot sources remove sample` the next start does not add them again."""
    from bot.cli.slack import _index_sample_if_empty
    from bot.runtime.services import build_services
    from bot.settings import Settings

    async def start() -> dict[str, int]:
        async with build_services(Settings(), with_llm=False) as services:
            await _index_sample_if_empty(services)
            return {s.source: s.documents for s in await services.index.source_stats()}

    assert asyncio.run(start()).get("sample", 0) > 0
    assert "indexing the sample docs" in capsys.readouterr().err
    code, out, err = run(capsys, "sources", "--json")
    assert [(r["source"], r["registered"], r["public"]) for r in json.loads(out)] == [
        ("sample", True, True)]
    code, out, err = run(capsys, "sources", "remove", "sample")
    assert code == 0, err
    assert asyncio.run(start()) == {}
    code, out, err = run(capsys, "sources", "--json")
    assert json.loads(out) == []


# -- item 5: Ctrl-C while embedding: out within 2 s, and it says the index is unchanged ---------

DRIVER = """
import sys, time
sys.path.insert(0, {root!r})
import bot.runtime.services as services
from tests.bot.test_cli_newcomer import HashEmbedder

class Slow(HashEmbedder):
    def encode(self, texts):
        print("EMBEDDING", file=sys.stderr, flush=True)
        time.sleep(60)  # a long batch on a slow CPU: it cannot be interrupted
        return super().encode(texts)

services.new_embedder = lambda settings, model: Slow(model)
from bot.cli.main import main
sys.exit(main())
"""


@pytest.mark.parametrize("command", ["index", "eval"])
def test_ctrl_c_while_embedding_exits_fast_and_says_nothing_was_written(
        data_dir, kb, tiny_beir, tmp_path, command):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = (["index", str(kb), "--source", "kb"] if command == "index" else
            ["eval", "--dataset", str(tiny_beir), "--split", "train", "--mode", "bm25"])
    # As in a terminal: a shell runs background jobs with SIGINT ignored, and an ignored signal
    # stays ignored across exec, so a test run started in the background (`cmd &`) would hand
    # the child a Ctrl-C it cannot receive.
    proc = subprocess.Popen([sys.executable, str(driver), *argv],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "EMBEDDING" in line or not line:
                break
        assert "EMBEDDING" in lines[-1], "".join(lines)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        proc.wait(timeout=20)
        took = time.monotonic() - started
        err = proc.stderr.read()
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert took < 2.0, f"took {took:.1f} s to stop"
    assert "nothing was written, the index is unchanged" in err
    assert "Traceback" not in err
    from bot.settings import Settings

    assert asyncio.run(_sources(Settings())) == {}
    eval_index = data_dir / "eval" / "tiny.sqlite3"
    if eval_index.exists():
        import sqlite3

        with sqlite3.connect(eval_index) as conn:
            assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0


# -- item 5: progress follows the embedding -----------------------------------------------------


def test_progress_lines_follow_the_chunks_embedded(capsys, data_dir, kb, fake_models,
                                                   monkeypatch):
    """Not on a terminal: progress lines with documents read, chunks embedded and the rate,
    counted from the embedding itself (not from the files read, which run ahead)."""
    import bot.console
    from bot.runtime import services

    monkeypatch.setattr(bot.console, "PROGRESS_EVERY_S", 0.0)  # a line on every step
    new_indexer = services.new_indexer

    def small_batches(*args):
        indexer = new_indexer(*args)
        indexer.batch_chunks = 4  # several embedding batches from this small corpus
        return indexer

    monkeypatch.setattr(services, "new_indexer", small_batches)
    code, out, err = run(capsys, "index", str(kb), "--source", "kb")
    assert code == 0
    lines = [x for x in err.splitlines() if x.startswith("indexing kb: ")]
    embedded = [int(x.split(", ")[1].split()[0]) for x in lines]
    assert embedded == sorted(embedded) and len(set(embedded)) > 2  # moves batch by batch
    assert embedded[-1] == int(out.split(";")[1].split()[0])  # the chunks of the summary
    assert any("chunks/s" in x for x in lines)
    assert lines[-1].startswith(f"indexing kb: {len(list(kb.rglob('*.*')))}/")


def test_progress_status_reports_rate_and_time_left():
    from bot.console import IndexProgress

    now = [0.0]
    lines = []

    class Stream:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    p = IndexProgress("indexing kb", 100, tty=False, every_s=5, stream=Stream(),
                      clock=lambda: now[0])
    with p:
        p.on_progress(5, 100)
        p.batch_started(25)
        assert p.status() == ("indexing kb: 5/100 documents read, 0 chunks embedded (the first "
                              "batch loads the model)")
        now[0] = 60.0  # loading the model took a minute: not counted in the rate
        p.batch_done(25)
        assert p.status() == "indexing kb: 5/100 documents read, 25 chunks embedded"
        p.on_progress(10, 100)
        p.batch_started(25)  # 10 documents read gave 50 chunks
        now[0] = 65.0
        p.batch_done(25)  # 5 chunks/s; 100 documents -> about 500 chunks, 450 to go: 90 s
        assert p.status() == ("indexing kb: 10/100 documents read, 50 chunks embedded, "
                              "5 chunks/s, about 2 min left")
    assert lines and "50 chunks embedded" in "".join(lines)


def test_a_crash_has_its_own_exit_code_and_one_line(data_dir, monkeypatch, capsys):
    """A bug is not "some files skipped" (exit 1) nor a user's mistake (2): exit 3, one line
    saying it is a bug, the traceback in the log."""
    from bot.cli import commands
    from bot.cli.main import main
    from bot.console import EXIT_CRASH

    async def broken(args):
        raise RuntimeError("Symlink loop from '/kb/loop'")

    monkeypatch.setattr(commands, "cmd_search", broken)
    assert main(["search", "vpn"]) == EXIT_CRASH
    err = capsys.readouterr().err
    assert "internal error (RuntimeError: Symlink loop" in err and "this is a bug" in err
