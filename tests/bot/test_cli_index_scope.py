"""`lorebot index PATH` on a source that holds more than PATH (issue 15 items 1 and 8, issue 14
"Knowledge base integrity"): nothing outside PATH is removed, another folder with the same name
is not the same source, one folder under two names is refused."""

from __future__ import annotations

from pathlib import Path

from tests.bot.test_cli_newcomer import fake_models, run  # noqa: F401 - fixture


def write_kb(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(8):
        (folder / f"doc{i}.md").write_text(f"# Doc {i}\n\nPolicy {i}: the office opens at {i}.\n")
    (folder / "parking.txt").write_text("Visitors park on level 2.\n")
    return folder


def test_indexing_one_file_removes_nothing_else(capsys, data_dir, tmp_path, fake_models):  # noqa: F811
    kb = write_kb(tmp_path / "kb")
    code, out, err = run(capsys, "index", str(kb), "--source", "handbook")
    assert code == 0, err
    assert out.startswith("added 9,")
    (kb / "parking.txt").write_text("Visitors park on level 3.\n")
    code, out, err = run(capsys, "index", str(kb / "parking.txt"), "--source", "handbook")
    assert code == 0, err
    assert out.startswith("added 0, updated 1, unchanged 0, removed 0,")
    # The file's folder name is not the source: the file is handbook's, so that is refused.
    code, out, err = run(capsys, "index", str(kb / "doc5.md"))
    assert code == 2 and "already indexed as source 'handbook'" in err
    # Removing the rest of the source takes --prune.
    code, out, err = run(capsys, "index", str(kb / "doc1.md"), "--source", "handbook", "--prune")
    assert code == 0 and "removed 8," in out


def test_another_folder_with_the_same_name_and_one_folder_under_two_names(
        capsys, data_dir, tmp_path, fake_models):  # noqa: F811
    kb = write_kb(tmp_path / "kb")
    assert run(capsys, "index", str(kb))[0] == 0  # source "kb"
    other = write_kb(tmp_path / "elsewhere" / "kb")
    code, out, err = run(capsys, "index", str(other))
    assert code == 2
    assert f"source 'kb' holds the folder {kb}" in err and "--source NAME" in err
    code, out, err = run(capsys, "index", str(kb), "--source", "travel")
    assert code == 2 and f"already indexed as source 'kb' (folder {kb})" in err
    code, out, err = run(capsys, "index", str(other), "--source", "elsewhere")
    assert code == 0 and out.startswith("added 9,")
    code, out, err = run(capsys, "sources", "--json")
    assert '"kb"' in out and '"elsewhere"' in out and '"travel"' not in out
