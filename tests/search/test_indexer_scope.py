"""Indexing a path touches only that path: never the rest of its source, never another source,
and one bad entry is one failed file, never the whole run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search.errors import SourceError
from search.loaders import discover, iter_documents

MB = 1024 * 1024


@pytest.fixture(scope="module")
def embedder():
    from search.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=16)


@pytest.fixture
async def env(tmp_path, embedder):
    from search.index.sqlite import SqliteIndex
    from search.indexer import Indexer

    index = SqliteIndex(tmp_path / "index.sqlite3")
    yield index, Indexer(index, embedder)
    await index.close()


def write_kb(folder: Path, n: int = 10) -> Path:
    (folder / "sub").mkdir(parents=True)
    for i in range(n - 2):
        (folder / f"doc{i}.md").write_text(f"# Doc {i}\n\nPolicy number {i} says hello.\n")
    (folder / "sub" / "a.md").write_text("# Sub A\n\nThe parking garage opens at seven.\n")
    (folder / "sub" / "b.md").write_text("# Sub B\n\nBikes go in the basement.\n")
    return folder


async def index(indexer, paths, source, *, prune=False):
    """What `lorebot index PATHS --source NAME [--prune]` does."""
    paths = [Path(p) for p in paths]
    files = discover(paths)
    items = iter_documents(files, source=source, max_bytes=20 * MB)
    return await indexer.index_documents(source, items, total=len(files), paths=paths,
                                         prune=prune)


async def paths_of(idx, source):
    return sorted(Path(d.path).name for d in (await idx.documents(source)).values())


async def test_a_symlink_loop_is_one_failed_file_not_the_run(env, tmp_path):
    idx, indexer = env
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "good.md").write_text("# Good\n\nThe VPN profile expires after 90 days.\n")
    os.symlink("loop.md", kb / "loop.md")  # points at itself
    os.symlink("pong.md", kb / "ping.md")
    os.symlink("ping.md", kb / "pong.md")
    summary = await index(indexer, [kb], "kb")
    assert summary.added == 1
    reasons = {Path(f.path).name: f.reason for f in summary.failed}
    assert set(reasons) == {"loop.md", "ping.md", "pong.md"}
    assert all("symbolic link loop" in r for r in reasons.values()), reasons
    # A second run with the loop still there: the good file stays, nothing crashes.
    again = await index(indexer, [kb], "kb")
    assert (again.unchanged, again.removed) == (1, 0)


async def test_indexing_one_file_of_a_source_removes_nothing_else(env, tmp_path):
    idx, indexer = env
    kb = write_kb(tmp_path / "kb")
    assert (await index(indexer, [kb], "kb")).added == 10
    one = await index(indexer, [kb / "doc5.md"], "kb")
    assert (one.added, one.unchanged, one.removed) == (0, 1, 0)
    assert len(await idx.documents("kb")) == 10
    # A file edited and re-indexed from its sub-folder updates its document (no twin).
    (kb / "sub" / "a.md").write_text("# Sub A\n\nThe parking garage opens at eight.\n")
    sub = await index(indexer, [kb / "sub"], "kb")
    assert (sub.added, sub.updated, sub.unchanged, sub.removed) == (0, 1, 1, 0)
    # Removed only under the indexed path, and only when the file is gone.
    (kb / "sub" / "b.md").unlink()
    (kb / "doc0.md").unlink()
    sub = await index(indexer, [kb / "sub"], "kb")
    assert sub.removed == 1
    assert "doc0.md" in await paths_of(idx, "kb") and "b.md" not in await paths_of(idx, "kb")
    # Removing the rest of the source takes an explicit prune.
    pruned = await index(indexer, [kb / "doc1.md"], "kb", prune=True)
    assert pruned.removed == 8 and await paths_of(idx, "kb") == ["doc1.md"]


async def test_another_folder_with_the_same_name_is_refused(env, tmp_path):
    idx, indexer = env
    kb = write_kb(tmp_path / "kb")
    await index(indexer, [kb], "kb")
    other = write_kb(tmp_path / "elsewhere" / "kb", n=3)
    with pytest.raises(SourceError) as info:
        await index(indexer, [other], "kb")
    message = str(info.value)
    assert "source 'kb'" in message and str(kb) in message and "--source" in message
    assert len(await idx.documents("kb")) == 10


async def test_the_same_folder_under_two_names_is_refused(env, tmp_path):
    idx, indexer = env
    kb = write_kb(tmp_path / "kb")
    await index(indexer, [kb], "handbook")
    for path in (kb, kb / "sub", kb / "doc1.md", tmp_path):
        with pytest.raises(SourceError) as info:
            await index(indexer, [path], "travel")
        assert "source 'handbook'" in str(info.value) and str(kb) in str(info.value)
    assert await idx.documents("travel") == {}
    assert len(await idx.documents("handbook")) == 10


async def test_two_folders_of_one_source_sharing_a_relative_path_do_not_overwrite(env, tmp_path):
    idx, indexer = env
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "readme.md").write_text(f"# Readme {name}\n\nFolder {name}.\n")
    summary = await index(indexer, [tmp_path / "a", tmp_path / "b"], "both")
    assert summary.added == 1
    assert [f.reason for f in summary.failed] == [
        f"same relative path as {tmp_path / 'a' / 'readme.md'} in another folder of source "
        "'both'; index the folders as separate sources"]


async def test_a_markdown_file_that_is_only_a_heading_is_indexed(env, tmp_path):
    idx, indexer = env
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "parking.md").write_text("# Parking garage\n")
    summary = await index(indexer, [kb], "kb")
    assert (summary.added, summary.failed) == (1, ())
    hits = await idx.bm25("parking", 3)
    assert hits and hits[0].title == "Parking garage"


async def test_files_are_not_mixed_into_a_web_source(env, tmp_path):
    from search.models import Document

    idx, indexer = env
    page = Document(doc_id="p1", source="wiki", title="Home", text="The wiki home page.",
                    content_hash="h", path="https://wiki.example/", url="https://wiki.example/")
    await indexer.index_documents("wiki", [page])
    kb = write_kb(tmp_path / "kb", n=3)
    with pytest.raises(SourceError, match="source 'wiki' holds web pages or Slack items"):
        await index(indexer, [kb], "wiki")
    assert list(await idx.documents("wiki")) == ["p1"]


async def test_a_folder_reached_through_a_symbolic_link_is_the_same_folder(env, tmp_path):
    idx, indexer = env
    kb = write_kb(tmp_path / "data" / "kb", n=3)
    os.symlink(kb, tmp_path / "kb-link")
    await index(indexer, [tmp_path / "kb-link"], "handbook")  # as typed, through the link
    again = await index(indexer, [kb], "handbook")  # as a registered folder is stored, resolved
    assert (again.added, again.unchanged, again.removed) == (0, 3, 0)
    with pytest.raises(SourceError, match="source 'handbook'"):
        await index(indexer, [kb], "travel")
