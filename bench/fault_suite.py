"""Fault suite: `lorebot serve` as a process, faults injected, replies counted per question.

The bot runs as in production (``lorebot serve``, configured by LOREBOT_* variables only)
against a real Valkey, the fake Slack Web API and the fake OpenAI server, over a knowledge base
with a public source and a restricted one allowed in one channel (``bench.fault_setup``).
Questions come in as signed events, as Slack sends them (an @mention as ``message`` plus
``app_mention``), from a member of the allowed channel, another channel, a DM and a non-member
of the allowed channel. Faults (``bench.fault_scenarios``): Redis stopped before start, stopped
mid-run (with Slack retries and thread follow-ups) and restarted empty; the Slack connection
dropped after chat.postMessage, chat.startStream and chat.stopStream; the LLM hanging, its
stream cut, its stream broken; SIGTERM mid-answer, then a restart while Redis is down.

Per scenario it counts replies lost, duplicated and leaked (the restricted document's marker
shown where its asker may not see it; see ``bench.fault_harness``) and replies left
unfinished (a stream never stopped, a preview never replaced by the answer). Prints a table, writes bench/results/fault_suite.json (or --json PATH), and exits 1 if any
count is not zero, a scenario failed to run, or the restricted document was never shown where
it is allowed (then the leak count would prove nothing).

    .venv/bin/python bench/fault_suite.py [--only NAME ...] [--json PATH] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, print_table, write_result  # noqa: E402
from bench.fault_harness import World  # noqa: E402
from bench.fault_process import build_template  # noqa: E402
from bench.fault_scenarios import SCENARIOS  # noqa: E402

COUNTS = ("lost", "duplicated", "leaked", "unfinished", "faults_missed")


async def run_scenario(name: str, root: Path, template) -> dict:
    from tests.support.fake_openai import FakeOpenAI
    from tests.support.fake_slack import FakeSlack

    started = time.monotonic()
    async with FakeSlack() as slack, FakeOpenAI() as openai:
        async with World(root / name, template, slack, openai) as world:
            try:
                await SCENARIOS[name](world)
                error = None
            except Exception:  # noqa: BLE001 - one broken scenario must not hide the others
                error = traceback.format_exc()
            result = world.count()
    result.update(scenario=name, error=error, seconds=round(time.monotonic() - started, 1),
                  llm_requests=openai.request_count, slack_calls=len(slack.calls))
    return result


async def run(names: list[str], root: Path) -> dict:
    started = time.monotonic()
    template = build_template(root / "template")
    setup_s = time.monotonic() - started
    results = []
    for name in names:
        print(f"running {name} …", file=sys.stderr, flush=True)
        results.append(await run_scenario(name, root, template))
        r = results[-1]
        print(f"  {name}: " + ", ".join(f"{k} {r[k]}" for k in ("questions", "replies", *COUNTS))
              + (" (FAILED TO RUN)" if r["error"] else ""), file=sys.stderr, flush=True)
    return {"scenarios": results, "setup_s": round(setup_s, 1),
            "wall_s": round(time.monotonic() - started, 1)}


def passed(payload: dict) -> bool:
    results = payload["scenarios"]
    return (all(r["error"] is None and all(r[k] == 0 for k in COUNTS) for r in results)
            and sum(r["restricted_shown_where_allowed"] for r in results) > 0)


def print_results(payload: dict) -> None:
    header = ("scenario", "questions", "replies", "lost", "dup", "leaked", "unfin", "missed",
              "A shown", "replies by kind")
    rows = [header]
    for r in payload["scenarios"]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["kinds"].items()))
        rows.append((r["scenario"] + (" (ERROR)" if r["error"] else ""), r["questions"],
                     r["replies"], r["lost"], r["duplicated"], r["leaked"], r["unfinished"],
                     r["faults_missed"], r["restricted_shown_where_allowed"], kinds))
    total = ["total", *(sum(int(row[i]) for row in rows[1:]) for i in range(1, 9)), ""]
    rows.append(tuple(total))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    print("\nFault suite: replies per question (lost, duplicated, leaked must all be 0)")
    for n, row in enumerate(rows):
        print("  ".join(str(c).ljust(w) if i in (0, 9) else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
        if n in (0, len(rows) - 2):
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    print("unfin: streams never stopped or previews never finished; missed: scripted Slack "
          "drops the bot never reached; A shown: replies that showed the restricted source where "
          "it is allowed (a leak check that never sees it proves nothing)")
    for r in payload["scenarios"]:
        for note in r["notes"]:
            print(f"  note {r['scenario']}: {note}")
        if r["error"]:
            print(f"  {r['scenario']} failed to run:\n{r['error']}")
    print_table("", [("setup (index two sources)", f"{payload['setup_s']:.0f} s"),
                     ("wall time", f"{payload['wall_s']:.0f} s"),
                     ("all counts zero", "yes" if payload["passed"] else "NO")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), metavar="NAME",
                        help=f"run these scenarios only: {', '.join(SCENARIOS)}")
    parser.add_argument("--json", type=Path, help="write the results here "
                        "(default bench/results/fault_suite.json)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (bot logs); "
                        "the knowledge base indexed there by an earlier run is reused")
    args = parser.parse_args(argv)
    # The fake LLM writing to a connection the bot gave up on (a deadline) is the fault itself,
    # not news: aiohttp would log a traceback for each.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    names = args.only or list(SCENARIOS)
    root = args.keep or Path(tempfile.mkdtemp(prefix="lorebot-faults-"))
    if args.keep:  # the scenarios' folders start afresh; an indexed template is reused
        for name in names:
            shutil.rmtree(root / name, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    try:
        payload = asyncio.run(run(names, root))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    payload["passed"] = passed(payload)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "fault_suite", "machine": machine(),
                                         **payload}, indent=2))
        path = args.json
    else:
        path = write_result("fault_suite", payload)
    print_results(payload)
    print(f"\nwrote {path}")
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
