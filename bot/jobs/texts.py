"""How a job reads in chat: queued, progress, then the summary or the error."""

from __future__ import annotations

from dataclasses import replace

from bot.jobs.queue import Job

# What a job's progress counts in each phase (index_source reports the phase).
PHASE_UNITS = {"fetching": "pages fetched", "reading": "threads read",
               "downloading": "files downloaded", "indexing": "documents done"}


def _safe(text: object, limit: int = 300) -> str:
    """Text from users, documents or the file system, made inert in Slack's mrkdwn and short:
    on one line, cut to ``limit`` characters, then ``&<>`` escaped (so never half an escape),
    so a source name, a path or an error cannot mention anyone, fake a link or flood a message."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def job_text(job: Job) -> str:
    """The Slack message that shows a job: queued, progress, then the summary or the error.
    Every part that comes from outside is escaped (:func:`_safe`)."""
    if job.kind != "finetune":
        job = replace(job, source=_safe(job.source), error=_safe(job.error) if job.error else None)
    if job.kind == "finetune":
        from bot.jobs.training import training_text

        return training_text(job)
    who = (f" (requested by <@{job.requested_by}>)"
           if job.requested_by and job.requested_by not in ("cli", "schedule") else "")
    if job.state == "queued":
        return f":hourglass: Reindex of *{job.source}* queued{who}."
    if job.state == "running":
        if job.phase:
            of = f"/{job.total}" if job.total is not None else ""
            unit = PHASE_UNITS.get(job.phase, "documents done")
            return f":arrows_counterclockwise: Reindexing *{job.source}*: {job.done}{of} {unit}{who}."
        return f":arrows_counterclockwise: Reindexing *{job.source}*…{who}"
    if job.state == "failed":
        return f":x: Reindex of *{job.source}* failed: {job.error}"
    s = job.summary or {}
    failed = s.get("failed") or []
    lines = [f":white_check_mark: Reindexed *{job.source}*: {s.get('added', 0)} added, "
             f"{s.get('updated', 0)} updated, {s.get('unchanged', 0)} unchanged, "
             f"{s.get('removed', 0)} removed, {len(failed)} failed; {s.get('chunks', 0)} chunks "
             f"embedded in {s.get('seconds', 0):.1f} s."]
    for f in failed[:10]:
        lines.append(f"• skipped {_safe(f['path'], 200)}: {_safe(f['reason'])}")
    if len(failed) > 10:
        lines.append(f"• … and {len(failed) - 10} more")
    return "\n".join(lines)
