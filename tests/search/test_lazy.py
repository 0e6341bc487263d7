"""search.lazy.Once: one build however many threads ask at once; a failed build is retried."""

import threading
import time

import pytest

from search.lazy import Once


def test_concurrent_first_calls_build_once():
    calls = []

    def build():
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while it builds
        return object()

    once = Once(build)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(once.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(seen) == 8 and all(v is seen[0] for v in seen)


def test_a_failed_build_is_not_kept():
    attempts = []

    def build():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("weights not there yet")
        return "model"

    once = Once(build)
    with pytest.raises(OSError):
        once.get()
    assert once.get() == "model"
    assert once.get() == "model" and len(attempts) == 2
