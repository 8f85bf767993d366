"""Killing processes at chosen points of a run: the trigger that picks the moment, and SIGKILL for a process tree.

A kill waits in a thread for its trigger (see ``scenario.TRIGGERS``), then for its
delay, then kills. A conversion is recognised by its Spark job: the spark-submit
JVM whose command line carries the Glue script and ``--manifest_id``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from tools.soak.scenario import Kill
from tools.soak.stack import SoakStack

POLL_SECONDS = 0.3
SCRIPT = "ndjson_to_parquet.py"


def kill_tree(pid: int) -> int:
    """SIGKILL a process and every descendant (gathered first, so none is re-parented away); returns how many."""
    try:
        root = psutil.Process(pid)
        victims = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return 0
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(victims, timeout=10)
    return len(victims)


def spark_jobs(stack: SoakStack) -> dict[str, psutil.Process]:
    """manifest id -> the JVM converting it, of this soak's conversions only (their ``--lake_root`` is its lake)."""
    lake_root = stack.settings.layout.lake_root
    jobs = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.name() != "java":
                continue
            args = proc.cmdline()
            if any(a.endswith(SCRIPT) for a in args) and _argument(args, "--lake_root") == lake_root:
                jobs[_argument(args, "--manifest_id")] = proc
    return jobs


def _argument(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def owner_of(job: psutil.Process, pids: list[int]) -> int | None:
    """Which of ``pids`` (run or task processes) the conversion ``job`` runs under."""
    with contextlib.suppress(psutil.Error):
        ancestors = {parent.pid for parent in job.parents()}
        return next((pid for pid in pids if pid in ancestors), None)
    return None


def open_manifests(stack: SoakStack, days: list[str]) -> set[str]:
    ledger = stack.ledger()
    return {manifest_id for day in days for manifest_id in ledger.open_manifests(day)}


def in_flight(stack: SoakStack) -> int:
    """Messages received and not yet deleted (or visible again)."""
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesNotVisible"])


def publishing(stack: SoakStack, manifest_ids: list[str]) -> str | None:
    """The first of ``manifest_ids`` whose job has written its publish log (it is copying its output now)."""
    s3, layout = stack.client("s3"), stack.settings.layout
    for manifest_id in manifest_ids:
        day = f"{manifest_id[:4]}-{manifest_id[4:6]}-{manifest_id[6:8]}"
        key = layout.publish_log_uri(day, manifest_id).split("/", 3)[3]
        with contextlib.suppress(s3.exceptions.ClientError):
            s3.head_object(Bucket=stack.names.lake_bucket, Key=key)
            return manifest_id
    return None


@dataclass
class KillWatch:
    """Waits in a thread for ``kill``'s moment, then calls ``action(manifest_id or None)``.

    The manifest is the one whose conversion (``conversion``, ``publish``) or claim (``claim``) made the moment.

    :param days: the days whose open manifests a ``claim`` trigger watches.
    :param deferred: whether the run has a deferred task now (the ``deferred`` trigger; real processes only).
    """

    kill: Kill
    stack: SoakStack
    action: Callable[[str | None], object]
    days: list[str] = field(default_factory=list)
    deferred: Callable[[], bool] | None = None
    fired_at: str | None = None  # the trigger's description once the kill happened
    outcome: object = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> KillWatch:
        self._baseline = open_manifests(self.stack, self.days) if self.kill.at == "claim" else set()
        self._in_flight = in_flight(self.stack)
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"kill-{self.kill.target}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _watch(self) -> None:
        manifest_id = self._await_trigger()
        if self._stop.is_set() or manifest_id is False:
            return
        if self._stop.wait(self.kill.delay):
            return
        self.outcome = self.action(manifest_id or None)
        self.fired_at = f"{self.kill.at} +{self.kill.delay}s (t={time.monotonic() - self._started:.0f}s)"

    def _await_trigger(self) -> str | bool | None:
        """The manifest the moment belongs to, None for a moment that has none, False if the watch was stopped."""
        while not self._stop.is_set():
            if self.kill.at == "time":
                return None
            if self.kill.at == "deferred":
                if self.deferred is not None and self.deferred():
                    return None
            elif self.kill.at == "intake":
                if in_flight(self.stack) > self._in_flight:
                    return None
            elif self.kill.at == "claim":
                new = open_manifests(self.stack, self.days) - self._baseline
                if new:
                    return sorted(new)[0]
            else:
                jobs = spark_jobs(self.stack)
                if self.kill.at == "conversion" and jobs:
                    return sorted(jobs)[0]
                if self.kill.at == "publish" and (found := publishing(self.stack, sorted(jobs))):
                    return found
            time.sleep(POLL_SECONDS)
        return False
