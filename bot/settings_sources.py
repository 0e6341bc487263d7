"""Where settings come from, checked: the data dir's default location, the ``.env`` file (with
line numbers), unknown ``LOREBOT_`` names (typos) and invalid values as one line each.

Used by ``bot.settings``; imports nothing of lorebot.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path

from pydantic import BaseModel, ValidationError

# ---- where the data lives ------------------------------------------------------------------


def user_data_dir(environ=None) -> Path:
    """The per-user data dir: ``$XDG_DATA_HOME/lorebot`` (default ``~/.local/share/lorebot``);
    ``~/Library/Application Support/lorebot`` on macOS, ``%LOCALAPPDATA%\\lorebot`` on Windows."""
    environ = os.environ if environ is None else environ
    if sys.platform == "win32":
        base = Path(environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "lorebot"


def locate_data_dir(cwd: Path | None = None, environ=None) -> tuple[Path, str]:
    """The default data dir and how it was found: the nearest existing ``.lorebot`` in ``cwd``
    or a folder above it, else :func:`user_data_dir`."""
    start = (cwd or Path.cwd()).absolute()
    for folder in (start, *start.parents):
        if (folder / ".lorebot").is_dir():
            return folder / ".lorebot", f"found in {folder}"
    return user_data_dir(environ), "the per-user data dir"


# ---- checking what the environment and .env say ----------------------------------------------

PREFIX = "LOREBOT_"


class SettingsError(ValueError):
    """Settings lorebot cannot run with: one readable line per problem (exit code 2)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def setting_names(model: type[BaseModel], prefix: str = PREFIX) -> set[str]:
    """Every variable name a setting is read from (a group's own name takes JSON)."""
    names = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names.add(f"{prefix}{name.upper()}")
            names |= setting_names(ann, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


_DOTENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


def read_dotenv(env_file) -> dict[str, tuple[str | None, str]]:
    """``LOREBOT_`` entries of the .env file(s) by upper-cased name: (value, "FILE line N")."""
    if not env_file:
        return {}
    from dotenv import dotenv_values

    files = [env_file] if isinstance(env_file, (str, os.PathLike)) else list(env_file)
    found: dict[str, tuple[str | None, str]] = {}
    for file in files:
        path = Path(file).expanduser()
        if not path.is_file():
            continue
        values = {k.upper(): v for k, v in dotenv_values(path).items()}
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = _DOTENV_LINE.match(line)
            if m and m.group(1).upper().startswith(PREFIX):
                name = m.group(1).upper()
                found[name] = (values.get(name), f"{file} line {n}")
    return found


def unknown_names(valid: set[str], environ, dotenv: dict) -> list[str]:
    """One line per ``LOREBOT_`` name not in ``valid``, with the closest valid one."""
    seen = {k.upper(): "environment" for k in environ if k.upper().startswith(PREFIX)}
    for name, (_, where) in dotenv.items():
        seen.setdefault(name, where)
    problems = []
    for name, where in sorted(seen.items()):
        if name in valid:
            continue
        close = closest_name(name, valid)
        hint = f"did you mean {close}?" if close else "see .env.example for every setting"
        problems.append(f"{name} ({where}) is not a lorebot setting; {hint}")
    return problems


def closest_name(name: str, valid: set[str], cutoff: float = 0.6) -> str | None:
    """The valid name ``name`` most likely misspells: group and setting are compared apart, and a
    setting also by its words (MODEE is closest to DEFAULT_MODE, not DEVICE)."""

    def ratio(a: str, b: str) -> float:
        return difflib.SequenceMatcher(None, a, b).ratio()

    def score(candidate: str) -> float:
        group, sep, field = name[len(PREFIX):].partition("__")
        c_group, c_sep, c_field = candidate[len(PREFIX):].partition("__")
        if not (sep and c_sep):
            return ratio(name[len(PREFIX):], candidate[len(PREFIX):])
        words = max((ratio(field, w) * 0.95 for w in c_field.split("_")), default=0.0)
        return (ratio(group, c_group) + max(ratio(field, c_field), words)) / 2

    best = max(sorted(valid), key=score, default=None)
    return best if best is not None and score(best) >= cutoff else None


_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "REDIS__URL")


def describe_errors(exc: ValidationError, environ, dotenv: dict) -> list[str]:
    """One line per invalid value: the variable, where it came from, the value, what is allowed."""
    env = {k.upper(): v for k, v in environ.items()}
    lines = []
    for error in exc.errors():
        parts = [str(p) for p in error["loc"] if isinstance(p, str)]
        name = PREFIX + "__".join(p.upper() for p in parts)
        allowed = error["msg"].removeprefix("Value error, ")
        allowed = allowed[:1].lower() + allowed[1:]
        if name in env:
            value, where = env[name], "environment"
        elif name in dotenv:
            value, where = dotenv[name]
        else:
            value, where = error.get("input"), None
        if any(word in name for word in _SECRET_WORDS):
            value = "…"  # a secret is never shown, not even a wrong one
        shown = f"{name}={value}" if isinstance(value, (str, int, float)) else name
        lines.append(f"{shown}{f' ({where})' if where else ''}: {allowed}")
    return lines
