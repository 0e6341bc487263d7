"""What the bot says in Feishu/Lark, besides answers (plain card Markdown)."""

from __future__ import annotations

EMPTY_QUESTION = ("Ask me a question about the team's documents, for example: "
                  "@lorebot how do I set up the VPN?")
# The service's wording, with Feishu's emoji (it has no :shortcodes:).
POLICY_UNAVAILABLE = ("⚠️ I cannot check right now which documents may be shown here (the source "
                      "registry is unavailable), so I am not answering from them. Please ask "
                      "again in a minute.")
RESTARTING = ("🔄 I am restarting and could not finish this answer. Please ask again in a "
              "minute.")
FEEDBACK_THANKS = {"helpful": "Thanks for the feedback!",
                   "not_helpful": "Thanks: this helps improve the answers.",
                   "wrong_source": "Thanks: the sources will be looked at."}
COMMAND_HELP = ("Commands: `/lorebot sources` (what I answer from here); admins also "
                "`/lorebot add URL_OR_PATH [NAME] [--private]`, `/lorebot reindex [NAME|all]`, "
                "`/lorebot channel allow|deny SOURCE` and `/lorebot remove NAME`.")
UNSUPPORTED_HERE = ("`/lorebot {sub}` is not available in Feishu/Lark yet: run "
                    "`lorebot sources {sub} …` on the server.")


def rate_limited(retry_after_s: float) -> str:
    wait = "a minute" if retry_after_s >= 60 else f"{max(1, round(retry_after_s))} s"
    return f"⏳ You are asking faster than I can answer. Please try again in {wait}."


def error(error_id: str) -> str:
    return (f"⚠️ Sorry, something went wrong while answering. Please try again; if it keeps "
            f"happening, give your admin this error id: `{error_id}`")


def feedback_error(error_id: str) -> str:
    return f"Could not store your feedback (error id {error_id}); please try again."


def refusal(sub: str) -> str:
    return (f"⛔ Only lorebot admins can run `/lorebot {sub}`. Ask an admin, or ask to be added "
            "to LOREBOT_LARK__ADMIN_OPEN_IDS.")
