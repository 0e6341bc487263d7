"""The fault suite's knowledge base, built once per run as an operator would: a public source
and a restricted one allowed in one channel only.

Run in a process of its own (``python -m bench.fault_setup KB DATA``) with ``LOREBOT_DATA_DIR``
and ``LOREBOT_REDIS__URL`` set: the CLI commands below load the embedding model, and doing all
of them in one process loads it once (each ``lorebot`` call would take its half minute).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

# The restricted document's marker: a word no other document, question or prompt contains, so
# any reply that shows it shows the restricted source.
MARKER = "ZEBRAQUARTZ"
SECRET_CHANNEL = "C0SECRET"
PUBLIC_DOC = """# VPN setup

To set up the VPN, install WireGuard and import the profile from the IT portal.
Profiles expire after 90 days; the helpdesk issues new ones on request.
"""
SECRET_DOC = f"""# Vault access

The vault door code is {MARKER}-7731. The vault door is opened by the finance team only, and
the vault door code changes every quarter.
"""


def write_kb(kb: Path) -> None:
    (kb / "public").mkdir(parents=True, exist_ok=True)
    (kb / "secret").mkdir(parents=True, exist_ok=True)
    (kb / "public" / "vpn.md").write_text(PUBLIC_DOC)
    (kb / "secret" / "vault.md").write_text(SECRET_DOC)


def main(kb: Path) -> int:
    from bot.cli.main import main as lorebot

    write_kb(kb)
    steps = [["index", str(kb / "public"), "--source", "kb"],
             ["sources", "add", str(kb / "secret"), "--name", "secret", "--private"],
             ["sources", "reindex", "secret"]]
    for argv in steps:
        if (code := lorebot(argv)) != 0:
            print(f"lorebot {' '.join(argv)} exited {code}", file=sys.stderr)
            return code
    return asyncio.run(_allow())


async def _allow() -> int:
    # No CLI command allows a channel (it is `/lorebot channel allow` in Slack): the registry's
    # own method, as that command calls it.
    from bot.settings import Settings
    from bot.sources.registry import SourceRegistry
    from bot.state.redis import open_redis

    settings = Settings()
    handle = await open_redis(settings)
    try:
        await SourceRegistry(handle.client, settings.redis.key_prefix).allow_channel(
            "secret", SECRET_CHANNEL)
    finally:
        await handle.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
