"""Files that would make a parser run for minutes or take gigabytes are refused with a reason:
inflated size checked before parsing, extracted characters capped, time per file bounded."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from search.errors import LoadError
from search.loaders import discover, iter_documents, load_file
from search.models import Document, LoadFailure
from tests.support import broken_files as bf

MB = 1024 * 1024


def load(path: Path, **kw) -> Document:
    return load_file(path, root=path.parent, source="kb", **{"max_bytes": 20 * MB, **kw})


def test_a_docx_that_inflates_to_50_mb_of_xml_is_refused_before_parsing(tmp_path: Path) -> None:
    path = bf.write_docx_bomb(tmp_path / "bomb.docx", inflated_mb=50)
    assert path.stat().st_size < 300 * 1024
    started = time.monotonic()
    with pytest.raises(LoadError) as info:
        load(path)
    assert time.monotonic() - started < 10
    assert re.search(r"inflates to 5\d MB of XML, over the 32 MB limit", str(info.value))


def test_a_pdf_with_too_many_text_runs_is_stopped_at_its_time_budget(tmp_path: Path) -> None:
    slow = bf.write_pdf_runs(tmp_path / "runs.pdf", 150_000)
    good = bf.write_pdf(tmp_path / "good.pdf", ["Hotel costs are reimbursed."])
    load(good)  # the converter process is up: the budget below is parsing alone
    started = time.monotonic()
    with pytest.raises(LoadError) as info:
        load(slow, time_budget_s=2)
    assert time.monotonic() - started < 6
    assert str(info.value).startswith("took longer than 2 s to read")
    # The next file gets a fresh converter and reads as usual; in a run, one failed file.
    assert "Hotel costs" in load(good).text
    items = list(iter_documents(discover([tmp_path]), source="kb", max_bytes=20 * MB,
                                time_budget_s=2))
    assert sorted(type(i).__name__ for i in items) == ["Document", "LoadFailure"]


def test_extracted_text_is_capped(tmp_path: Path) -> None:
    # A CSV becomes a Markdown table, with more characters than the file has bytes.
    path = tmp_path / "big.csv"
    path.write_text("\n".join(",".join(f"{r}-{c}" for c in range(8)) for r in range(3000)))
    size = path.stat().st_size
    with pytest.raises(LoadError) as info:
        load(path, max_bytes=size + 1)  # the file is within the limit, its text is not
    assert "million characters of text, over the" in str(info.value)
    assert "LOREBOT_SEARCH__MAX_FILE_MB" in str(info.value)
    assert "2999-7" in load(path).text
