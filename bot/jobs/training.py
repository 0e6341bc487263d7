"""Fine-tuning as a job on the reindex queue (bot.jobs.queue): `/lorebot finetune` queues it, a worker
(`lorebot worker`, or the one inside `lorebot serve`) runs bot.training.finetune.finetune, and the
job's Slack message shows the phase, then the before/after table and the gate's verdict.

A training job is ``Job(kind="finetune", source=<model kind>, params={dataset, force, epochs,
max_steps})``; every training job holds the same lock, so one trains at a time.
"""

from __future__ import annotations

import logging

from bot.jobs.queue import Job, JobError, Progress
from bot.jobs.worker import RunTraining
from bot.settings import Settings

logger = logging.getLogger(__name__)

MODEL_KINDS = ("adapter", "reranker", "embedder")
# Rows of the before/after table: (key in the gate's metrics, label).
TABLE_ROWS = (("ndcg@10", "nDCG@10"), ("mrr@10", "MRR@10"), ("hit@1", "hit@1"),
              ("hit@5", "hit@5"), ("hit@10", "hit@10"))


def training_runner(settings: Settings) -> RunTraining:
    """What a worker calls to run a training job; returns finetune()'s result dict."""

    async def run(job: Job, progress: Progress) -> dict:
        from bot.console import CliError
        from bot.training.finetune import finetune
        from search.errors import SearchError

        if job.source not in MODEL_KINDS:
            raise JobError(f"unknown model kind {job.source!r}; one of {', '.join(MODEL_KINDS)}")
        p = job.params or {}
        try:
            return await finetune(
                settings, job.source, dataset=p.get("dataset"), epochs=p.get("epochs"),
                max_steps=p.get("max_steps"), force=bool(p.get("force")), progress=progress,
                questions=p.get("questions"),
                say=lambda text: logger.info("Training job %s (%s): %s", job.id, job.source, text))
        except (CliError, SearchError) as exc:
            # Problems the admin can fix (no training data, a bad dataset, the backend): the
            # message alone, as the CLI prints it, with the Slack spelling of its option.
            text = str(exc)
            if "--dataset" in text:
                text += " (in Slack: `/lorebot finetune KIND dataset=DIR`)"
            raise JobError(text) from exc

    return run


def training_text(job: Job) -> str:
    """The Slack message of a training job: queued, the phase, then the verdict and the table."""
    who = (f" (requested by <@{job.requested_by}>)"
           if job.requested_by and job.requested_by not in ("cli", "schedule") else "")
    model = f"the *{job.source}*"
    if job.state == "queued":
        data = (job.params or {}).get("dataset")
        on = f" on `{data}`" if data else " on the live index and feedback"
        return f":hourglass: Fine-tuning of {model}{on} queued{who}."
    if job.state == "running":
        return f":arrows_counterclockwise: Fine-tuning {model}: {_phase_text(job)}{who}."
    if job.state == "failed":
        return f":x: Fine-tuning of {model} failed: {job.error}"
    return result_text(job.summary or {}, requested=who)


def _phase_text(job: Job) -> str:
    if not job.phase:
        return "starting (loading the data)"
    of = f"/{job.total}" if job.total else ""
    count = f"{job.done}{of}"
    if job.phase == "training":
        return f"training step {count}" if job.done or job.total else "training"
    if job.phase == "mining":
        return f"mining hard negatives, {count} queries"
    if job.phase.startswith("validating "):
        which = job.phase.removeprefix("validating ")
        return f"validating the {which} model, {count} queries"
    if job.phase == "re-embedding":
        return f"re-embedding the index with the candidate, {count}"
    if job.phase == "fitting fusion":
        return f"fitting the adapter's fusion weight, fold {count}"
    if job.phase == "indexing dataset":
        return "indexing the dataset"
    if job.phase == "promoting":
        return "promoting (re-embedding the live index)"
    return f"{job.phase} {count}"


def verdict_text(result: dict) -> str:
    """Promoted, forced or refused, and which of the gate's two questions decided it."""
    gate = result.get("gate") or {}
    h, g = gate.get("heldout") or {}, gate.get("guard") or {}
    if not h or not g:
        return "promoted" if result.get("promoted") else "refused"
    why = []
    if not h.get("passed"):
        why.append(f"the held-out gain's 95% interval [{h['low']:+.4f}, {h['high']:+.4f}] is not "
                   f"above zero" if h["low"] <= 0 else
                   f"the held-out gain {h['mean']:+.4f} < {result.get('min_gain')} "
                   "(LOREBOT_FINETUNE__MIN_GAIN)")
    if not g.get("passed"):
        why.append(f"the guard loses beyond its noise (95% interval [{g['low']:+.4f}, "
                   f"{g['high']:+.4f}] below zero)")
    if result.get("gate_passed"):
        return "promoted by the gate"
    if result.get("promoted"):
        return "promoted with --force; the gate refused it: " + "; ".join(why)
    return "refused: " + "; ".join(why)


def gate_table(result: dict) -> str:
    """The before/after table: both question sets, their metrics, and the paired test's interval
    on nDCG@10 with each question's verdict."""
    gate = result.get("gate") or {}
    guard = result.get("guard") or {}
    sets = [("held-out", result.get("before") or {}, result.get("after") or {},
             gate.get("heldout") or {}, "gains", "no gain"),
            ("guard", guard.get("before") or {}, guard.get("after") or {},
             gate.get("guard") or {}, "no harm", "harm")]
    lines = [f"{'questions':<9} {'metric':<8} {'active':>8} {'candidate':>10} {'change':>8}"]
    for name, before, after, test, yes, no in sets:
        for key, label in TABLE_ROWS:
            b, a = before.get(key), after.get(key)
            if b is None or a is None:
                continue
            lines.append(f"{name:<9} {label:<8} {b:>8.4f} {a:>10.4f} {a - b:>+8.4f}")
            name = ""
        if test:
            lines.append(f"{'':<9} 95% interval of the nDCG@10 change over {test['n']} queries: "
                         f"[{test['low']:+.4f}, {test['high']:+.4f}]: "
                         f"{yes if test['passed'] else no}")
    return "\n".join(lines)


def result_text(result: dict, *, requested: str = "") -> str:
    """The verdict (promoted, forced or refused, and why) and the before/after table."""
    kind, cid = result.get("kind", "?"), result.get("candidate", "?")
    verdict = verdict_text(result)
    if result.get("promoted"):
        # Running bots and workers follow the registry (bot.runtime.reload); commands start fresh.
        after = ("The index now holds its vectors, and running bots and workers switch to it "
                 "with their next search or reindex." if kind == "embedder" else
                 "Running bots use it from their next question"
                 + (" (unless LOREBOT_SEARCH__RERANKER_MODEL names another reranker)."
                    if kind == "reranker" else "."))
        head = f":white_check_mark: Fine-tuned the *{kind}*: `{cid}` {verdict}. {after}"
    else:
        head = (f":no_entry_sign: Fine-tuned the *{kind}*: `{cid}` {verdict}. The active "
                f"model stays; `/lorebot models promote {cid}` promotes it anyway.")
    before, after_ = result.get("before") or {}, result.get("after") or {}
    modes = (before.get("mode"), after_.get("mode"))
    mode = (f", {modes[0]} retrieval" if modes[0] == modes[1] else
            f", active {modes[0]} vs candidate {modes[1]} retrieval") if any(modes) else ""
    where = (f"Validation on {result.get('validation_queries', '?')} held-out questions (drawn "
             f"at random) and {result.get('guard_queries', '?')} guard questions (about documents "
             f"no training question is about){mode}{requested}.")
    if (factor := result.get("dense_factor")) is not None:
        where += (f" The {kind} fuses with the dense weight x{factor:g}, fitted "
                  + ("on its training questions out of fold."
                     if result.get("dense_factor_fit") == "out of fold"
                     else "on the held-out questions (their figure cross-fitted)."))
    return "\n".join([head, where, "```", gate_table(result), "```"])
