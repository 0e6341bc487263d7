"""Every text a Slack user reads from lorebot, in one place (wording, tone, a future translation).

Texts are Slack mrkdwn. Functions take the variable parts; nothing here knows about Block Kit.
Variable parts typed by users or taken from documents go through :func:`escape`.
"""

from __future__ import annotations


def escape(text: str) -> str:
    """Escape the three characters Slack reserves for its own markup, so that text from users,
    documents or the LLM cannot mention anyone (``<!channel>``, ``<@U…>``) or fake a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SEARCHING = "Searching…"
# Shown in the assistant pane while the status is up, cycled by Slack.
LOADING_MESSAGES = (
    "Searching the knowledge base…",
    "Reading the best passages…",
    "Writing an answer with citations…",
)
STREAMING_CURSOR = " …"

WELCOME = (
    "Hi! Ask me anything about the team's documents. I answer from the knowledge base and "
    "cite my sources, so you can check every claim."
)
SUGGESTED_PROMPTS_TITLE = "Try one of these:"
# (title, message) pairs offered when an assistant thread starts.
SUGGESTED_PROMPTS = (
    ("What can you do?", "What can lorebot do, and where do its answers come from?"),
    ("Getting started", "How do I get started?"),
    ("Add documents", "How do I add my own documents to the knowledge base?"),
)

EMPTY_QUESTION = (
    "What would you like to know? Ask me a question after the mention, e.g. "
    "`@lorebot how do I set up the VPN?`"
)
SOURCES_HEADING = "*Sources*"
NO_LINK = "no link"
FEEDBACK_PROMPT = "Was this helpful?"
BUTTON_HELPFUL = "👍 Helpful"
BUTTON_NOT_HELPFUL = "👎 Not helpful"
BUTTON_WRONG_SOURCE = "Wrong source"
FEEDBACK_THANKS = {
    "helpful": "Thanks for the feedback! Glad it helped.",
    "not_helpful": "Thanks for the feedback: it helps me get better.",
    "wrong_source": "Thanks: I'll learn from that. The sources under the answer may not fit it.",
}

COMMAND_HELP = (
    "*lorebot* answers questions from the team's documents, with citations.\n"
    "• `/lorebot ask QUESTION`: answer a question here\n"
    "• mention me in a channel (`@lorebot QUESTION`), send me a DM, or open me in the "
    "assistant pane; follow-ups in the thread keep the context\n"
    "• `/lorebot help`: this help"
)
COMMAND_ASK_EMPTY = "Ask me something after `ask`, e.g. `/lorebot ask how do I set up the VPN?`"


ANSWER_CUT = "_… (the rest of this answer is too long for one Slack message)_"


def more_not_shown(count: int) -> str:
    """The line that stands for what did not fit in a message or view."""
    return f"… and {count} more not shown"


def command_question_header(user: str, question: str) -> str:
    """The message a `/lorebot ask` answer is threaded under (the question is the user's text,
    shown as typed: a ``<!channel>`` in it does not notify the channel)."""
    return f"<@{user}> asked: {escape(question)}"


def rate_limited(retry_after_s: int) -> str:
    wait = "a minute" if retry_after_s >= 60 else f"{retry_after_s} s"
    return (
        f"You're asking faster than I can keep up. Please try again in {wait}: "
        "your question wasn't lost, just ask it again."
    )


def error(error_id: str) -> str:
    """The reply when answering failed; the id is in the log next to the cause."""
    return (
        f":warning: Sorry, something went wrong on my side and I couldn't answer. "
        f"Please try again in a moment. If it keeps happening, give your admin this error id: "
        f"`{error_id}`."
    )


def feedback_error(error_id: str) -> str:
    return f"Sorry, I couldn't save your feedback (error id `{error_id}`). Please try again."


RESTARTING = (":arrows_counterclockwise: I am restarting and could not finish this answer. "
              "Please ask again in a minute.")
