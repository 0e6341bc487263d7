"""A tiny BEIR-format dataset: eight one-sentence handbook topics, one question each, every
question in the ``train`` split. Small enough that fine-tuning commands finish in seconds with the
real MiniLM; the ``tiny_beir`` fixture in tests/conftest.py writes it for a test."""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = [
    ("vpn", "Setting up the VPN", "Install the VPN client and register your hardware key."),
    ("hotel", "Hotel budget", "Hotels are reimbursed up to 180 euros per night on trips."),
    ("flight", "Flight class", "Economy class is required for flights under six hours."),
    ("laptop", "Laptop refresh", "Laptops are replaced every three years by the IT helpdesk."),
    ("payroll", "Payroll dates", "Salaries are paid on the last working day of the month."),
    ("parking", "Parking permits", "Parking permits for the garage are issued by facilities."),
    ("badge", "Lost badge", "Report a lost access badge to security within one day."),
    ("leave", "Parental leave", "Parental leave lasts sixteen weeks at full pay."),
]
QUESTIONS = {
    "vpn": "how do I install the vpn client", "hotel": "what is the hotel budget per night",
    "flight": "which class for short flights", "laptop": "when is my laptop replaced",
    "payroll": "when are salaries paid", "parking": "who issues parking permits",
    "badge": "I lost my access badge", "leave": "how long is parental leave",
}


# A second wording per topic (``write_tiny_beir(root, second=True)``): two questions about one
# document, so a random held-out question can be about a document a training question is about.
SECOND = {
    "vpn": "register hardware key for remote access", "hotel": "nightly reimbursement for hotels",
    "flight": "economy or business on a four hour flight", "laptop": "laptop renewal interval",
    "payroll": "which day is payday", "parking": "garage permit request",
    "badge": "security badge missing", "leave": "weeks of leave for new parents",
}


def write_tiny_beir(root: Path, *, second: bool = False) -> Path:
    """Write corpus.jsonl, queries.jsonl (query ids ``q-<topic>``, and ``q2-<topic>`` with
    ``second``) and qrels/train.tsv to ``root``."""
    questions = {"q-" + d: (d, q) for d, q in QUESTIONS.items()}
    if second:
        questions |= {"q2-" + d: (d, q) for d, q in SECOND.items()}
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, t, x in TOPICS))
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"_id": qid, "text": q}) + "\n" for qid, (_d, q) in questions.items()))
    (root / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{qid}\t{d}\t1\n"
                                                  for qid, (d, _q) in questions.items()))
    return root
