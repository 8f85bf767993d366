"""A server the local stack runs as a child process: started, awaited until it answers, stopped on exit."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def child_server(
    name: str,
    command: list[str],
    answers: Callable[[], bool],
    *,
    log_path: str | None = None,
    timeout: float = 90.0,
    **popen: Any,
) -> Iterator[subprocess.Popen]:
    """Run ``command``; yield it once ``answers()`` is true; terminate it (kill after 10 s) on exit.

    :param name: what the server is, for the errors.
    :param answers: whether the server answers yet (polled every 0.2 s until ``timeout``).
    :param log_path: file its output is appended to (discarded otherwise).
    :param popen: more arguments of ``subprocess.Popen`` (``env``, ``cwd``, ``preexec_fn``).
    """
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed on exit
    proc = subprocess.Popen(command, stdout=out, stderr=out, **popen)
    try:
        deadline = time.monotonic() + timeout
        while not answers():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} before it answered")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer within {timeout:.0f}s")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path:
            out.close()
