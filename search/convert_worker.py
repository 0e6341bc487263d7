"""Converting a file in a child process, with a time budget.

A parser can be made to run for minutes and take gigabytes on a small file (a PDF of millions of
text runs, an XLSX of a million empty cells): no check made before parsing catches every such
file, and a thread cannot be stopped. So converted formats (PDF, Office, EPUB...) are parsed in
one long-lived child interpreter; a file that runs past its budget gets its child killed (the
next file starts a fresh one) and is reported as too slow. The child is a plain
``python -m search.convert_worker``, not a fork: the parent has model and event-loop threads a
fork would copy mid-flight. Replies are JSON, never pickle: the child parses hostile files.

Frames on both pipes: an 8-byte big-endian length, then that many bytes.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from search.errors import LoadError

DEFAULT_TIME_BUDGET_S = 120.0
# The child's address space: about six times what it needs for ordinary files, so a file that
# would take gigabytes fails with MemoryError in the child instead of swapping the host.
MEMORY_LIMIT_BYTES = 2 * 1024 * 1024 * 1024
_STARTUP_S = 120.0
_LEN = struct.Struct(">Q")


class _Child:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "search.convert_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)
        # The child says when its imports are done, so a file's budget is its parsing alone.
        try:
            (size,) = _LEN.unpack(self._read(_LEN.size, time.monotonic() + _STARTUP_S))
            self._read(size, time.monotonic() + _STARTUP_S)
        except (TimeoutError, _ChildDied):
            self.kill()
            raise LoadError("could not start the document converter process; check that "
                            "markitdown is installed") from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def ask(self, header: dict, data: bytes, deadline: float) -> dict:
        head = json.dumps(header).encode()
        try:
            self.proc.stdin.write(_LEN.pack(len(head)) + head + _LEN.pack(len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _ChildDied from exc
        (size,) = _LEN.unpack(self._read(_LEN.size, deadline))
        return json.loads(self._read(size, deadline))

    def _read(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        out = bytearray()
        while len(out) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            block = os.read(fd, min(n - len(out), 1 << 20))
            if not block:
                raise _ChildDied
            out += block
        return bytes(out)


class _ChildDied(Exception):
    pass


class ParserError(Exception):
    """What the parser raised in the child (its type and message), kept as the `LoadError`'s
    cause for logs and tests."""


_lock = threading.Lock()
_child: _Child | None = None


def convert_bounded(ext: str, data: bytes, *, max_chars: int,
                    budget_s: float = DEFAULT_TIME_BUDGET_S) -> tuple[str, str | None]:
    """`search.converted_formats.convert` in the child, within ``budget_s`` seconds and at
    most ``max_chars`` characters of text; raises `LoadError` with the reason otherwise."""
    global _child
    # One child for the process: runs index one file at a time, and two runs at once share it.
    with _lock:
        if _child is None or not _child.alive():
            _child = _Child()
        child = _child
        try:
            reply = child.ask({"ext": ext, "max_chars": max_chars}, data,
                              time.monotonic() + budget_s)
        except TimeoutError:
            child.kill()
            _child = None
            raise LoadError(
                f"took longer than {budget_s:g} s to read, stopped (too many pages or objects); "
                "split the file or save it in a simpler format"
            ) from None
        except _ChildDied:
            child.kill()
            _child = None
            raise LoadError(
                "the parser stopped while reading this file (out of memory?); split the file "
                "or save it in a simpler format"
            ) from None
    if "error" in reply:
        cause = ParserError(reply["cause"]) if reply.get("cause") else None
        raise LoadError(reply["error"]) from cause
    return reply["text"], reply["title"]


def _serve() -> None:
    """The child's loop: read a request, convert, reply; until stdin closes."""
    from search.converted_formats import convert

    # The replies get their own copy of stdout; anything a library prints goes to stderr
    # instead of corrupting a frame.
    stdin, stdout = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):  # not Linux/BSD, or a lower hard limit already
        pass
    try:
        import markitdown.converters  # noqa: F401 - slow; imported before the first budget runs
    except Exception:  # noqa: BLE001 - each file then gets convert()'s own clear reason
        pass
    stdout.write(_LEN.pack(2) + b"{}")
    stdout.flush()

    def read(n: int) -> bytes:
        out = stdin.read(n)
        if len(out) < n:
            raise EOFError
        return out

    while True:
        try:
            header = json.loads(read(_LEN.unpack(read(_LEN.size))[0]))
            data = read(_LEN.unpack(read(_LEN.size))[0])
        except EOFError:
            return
        try:
            text, title = convert(header["ext"], data)
            if len(text) > header["max_chars"]:
                reply = {"error": too_much_text(len(text), header["max_chars"])}
            else:
                reply = {"text": text, "title": title}
        except MemoryError:
            reply = {"error": f"needs more than {MEMORY_LIMIT_BYTES >> 30} GB of memory to read; "
                              "split the file or save it in a simpler format"}
        except LoadError as exc:
            cause = exc.__cause__
            if isinstance(cause, MemoryError):
                exc = LoadError(f"needs more than {MEMORY_LIMIT_BYTES >> 30} GB of memory to "
                                "read; split the file or save it in a simpler format")
            reply = {"error": str(exc),
                     "cause": f"{type(cause).__name__}: {cause}"[:500] if cause else None}
        except Exception as exc:  # noqa: BLE001 - one file's bug is that file's failure
            reply = {"error": f"unexpected error: {type(exc).__name__}: {exc}"[:300]}
        body = json.dumps(reply).encode()
        stdout.write(_LEN.pack(len(body)) + body)
        stdout.flush()


def too_much_text(n: int, limit: int) -> str:
    return (f"{n / 1e6:.1f} million characters of text, over the {limit / 1e6:g} million "
            "limit (the file size limit, LOREBOT_SEARCH__MAX_FILE_MB); split the file")


if __name__ == "__main__":
    _serve()
