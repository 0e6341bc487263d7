"""The fault suite (bench/fault_suite.py) runs in CI too, on two of its scenarios: `lorebot
serve` as a process, Redis stopped mid-run with Slack retries and follow-ups, and Slack
dropping the connection after a post. Every question gets exactly one reply and the
restricted source shows only where it is allowed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ["redis_stopped_mid_run", "slack_drop_post"]


@pytest.mark.slow
def test_fault_suite_scenarios_lose_duplicate_and_leak_nothing(tmp_path):
    out = tmp_path / "faults.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fault_suite.py"), "--only", *SCENARIOS,
         "--json", str(out)], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=1200)
    assert out.exists(), done.stderr[-3000:]
    results = {r["scenario"]: r for r in json.loads(out.read_text())["scenarios"]}
    assert sorted(results) == sorted(SCENARIOS)
    for name, r in results.items():
        assert r["error"] is None, f"{name}: {r['error']}"
        counts = {k: r[k] for k in ("lost", "duplicated", "leaked", "unfinished",
                                    "faults_missed")}
        assert counts == dict.fromkeys(counts, 0), (name, counts, r["notes"])
        assert r["replies"] == r["questions"] > 0
    # The leak count means something only if the restricted document was shown where allowed.
    assert sum(r["restricted_shown_where_allowed"] for r in results.values()) > 0
    assert done.returncode == 0, done.stdout[-3000:]
