"""What every command shares with the code it runs: the error a user can fix, the exit codes,
and JSON output. Below the CLI, so training and jobs can raise :class:`CliError` without
importing the command line. Imports nothing of lorebot."""

from __future__ import annotations

import json

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def print_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))
