"""Every `lorebot …` command the README shows is one the command line accepts as written
(placeholders such as <id> and [--optional] parts aside): a renamed flag or subcommand fails
here, not for the reader."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bot.cli.main import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"^\s*(\.venv/bin/)?", "", line)
            for part in line.split(";"):
                part = re.split(r"\s#\s|\s{2,}#", part)[0].strip()
                if part.startswith("lorebot "):
                    commands.append(part)
    return commands


def as_argv(command: str) -> list[str]:
    command = re.sub(r"<[^>]+>", "ID", command)  # a placeholder stands for one value
    command = re.sub(r"\s\[[^\]]*\]", "", command)  # [--optional parts] are not typed as shown
    return shlex.split(command)[1:]


COMMANDS = readme_commands(README.read_text())


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses(command):
    try:
        build_parser().parse_args(as_argv(command))
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"the README's `{command}` is refused by the CLI (exit {exc.code})")


def test_a_wrong_command_would_be_caught():
    with pytest.raises(SystemExit):
        build_parser().parse_args(as_argv("lorebot index ~/kb --sauce handbook"))
