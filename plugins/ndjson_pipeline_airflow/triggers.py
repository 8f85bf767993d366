"""Trigger that waits, in the triggerer, until a day has enough pending work to be worth a batch, and wakes its run
only if it is the one run that batch wakes."""

from __future__ import annotations

from asyncio import sleep
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.ledger import OpenDaysScan, PendingSummary, PendingSummaryScan, WorkIndex, wakes
from ndjson_pipeline.usage import RequestRecorder
from ndjson_pipeline_airflow import AWS_CONN_ID
from ndjson_pipeline_airflow.hooks.ledger import LedgerHook


class PendingWorkTrigger(BaseTrigger):
    """Polls the ledger's pending index asynchronously; fires once an open day is ready and its wake is this run's.

    The days watched are every day the ledger's open-days registry lists, read
    again on each poll: however old a day, its pending work is found, and a day
    opened while the trigger waits is watched from the next poll. A day is ready
    when it has at least ``enough_files`` pending files or ``enough_bytes``
    pending bytes, or when its oldest pending file has waited
    ``max_wait_seconds``. Counting stops at the thresholds, so a poll reads a
    bounded number of index pages however large the backlog.

    The overlapping ingest runs' triggers all see a day become ready at once. So
    a ready day wakes this trigger's run only if the run takes the day's wake
    (``ledger.wakes``, a conditional write exactly one of them wins); the
    trigger fires with the days it took and keeps waiting while others hold
    them, until the woken run's planner frees the wake for the next batch.

    Between polls it sleeps ``poll_seconds``, or less when a day's oldest file
    comes of age or the deadline falls sooner, so it fires when a day becomes
    ready and gives up at ``deadline`` (a ``timeout`` event), not a poll later.

    :param work_index: where the ledger's work is found (``WorkIndex.as_dict()``): table, index, keys, shards.
    :param dag_run: the DAG run this trigger wakes (``<dag_id>/<run_id>``): who takes the days' wakes.
    :param enough_files: pending files that make a day ready.
    :param enough_bytes: pending bytes that make a day ready.
    :param max_wait_seconds: age of the oldest pending file that makes a day ready.
    :param deadline: ISO-8601 instant after which the trigger gives up.
    :param poll_seconds: pause between polls.
    :param aws_conn_id: the Airflow AWS connection.
    """

    def __init__(
        self,
        *,
        work_index: dict[str, Any],
        dag_run: str,
        enough_files: int,
        enough_bytes: int,
        max_wait_seconds: int,
        deadline: str,
        poll_seconds: int = 30,
        aws_conn_id: str | None = AWS_CONN_ID,
    ) -> None:
        super().__init__()
        self.work_index = dict(work_index)
        self.dag_run = dag_run
        self.enough_files = enough_files
        self.enough_bytes = enough_bytes
        self.max_wait_seconds = max_wait_seconds
        self.deadline = deadline
        self.poll_seconds = poll_seconds
        self.aws_conn_id = aws_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "work_index": self.work_index,
                "dag_run": self.dag_run,
                "enough_files": self.enough_files,
                "enough_bytes": self.enough_bytes,
                "max_wait_seconds": self.max_wait_seconds,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
                "aws_conn_id": self.aws_conn_id,
            },
        )

    def is_ready(self, summary: PendingSummary, now: datetime) -> str | None:
        """Why a day is ready (files, bytes or wait), or None while it should keep waiting."""
        if summary.files >= self.enough_files:
            return "files"
        if summary.bytes >= self.enough_bytes:
            return "bytes"
        if summary.files and summary.oldest_age_seconds(now) >= self.max_wait_seconds:
            return "wait"
        return None

    def next_poll_in(self, summaries: list[PendingSummary], now: datetime, deadline: datetime) -> float:
        """Seconds until the next poll: a poll interval, or sooner if a day comes of age or the deadline falls.

        A day already of age whose wake another run holds is polled again a poll interval later.
        """
        due = [deadline, now + timedelta(seconds=self.poll_seconds)]
        of_age = [
            datetime.fromisoformat(s.oldest_registered_at) + timedelta(seconds=self.max_wait_seconds)
            for s in summaries
            if s.files and s.oldest_registered_at
        ]
        due += [moment for moment in of_age if moment > now]
        return max(0.0, (min(due) - now).total_seconds())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = LedgerHook(aws_conn_id=self.aws_conn_id)
        index = WorkIndex.from_dict(self.work_index)
        deadline = datetime.fromisoformat(self.deadline)
        recorder = RequestRecorder()  # its polls, reported in the event: the triggerer runs many triggers
        async with await hook.get_async_conn() as client:
            recorder.attach(client)
            while True:
                now = utcnow()
                days = await self._open_days(client, index)
                ready: dict[str, dict[str, Any]] = {}
                summaries = []
                for day in days:
                    scan = PendingSummaryScan(
                        index, day, enough_files=self.enough_files, enough_bytes=self.enough_bytes
                    )
                    while (request := scan.next_request()) is not None:
                        scan.add_page(await client.query(**request))
                    summary = scan.result()
                    summaries.append(summary)
                    reason = self.is_ready(summary, now)
                    if reason:
                        ready[day] = {"reason": reason, "files": summary.files, "bytes": summary.bytes}
                woken = {day: why for day, why in ready.items() if await self._take_wake(client, index, day, now)}
                if woken:
                    self.log.info("pending work ready, waking %s: %s", self.dag_run, woken)
                    yield TriggerEvent(
                        {
                            "status": "ready",
                            "days": sorted(woken, reverse=True),
                            "summary": woken,
                            "usage": recorder.take().as_dict(),
                        }
                    )
                    return
                if ready:
                    self.log.info("pending work ready, but another run was woken for it: %s", ready)
                if now >= deadline:
                    usage = recorder.take().as_dict()
                    yield TriggerEvent({"status": "timeout", "days": [], "summary": {}, "usage": usage})
                    return
                pause = self.next_poll_in(summaries, now, deadline)
                self.log.info("no open day of %s is ready yet; next poll in %.1fs", days, pause)
                await sleep(pause)

    async def _take_wake(self, client: Any, index: WorkIndex, day: str, now: datetime) -> bool:
        """Whether this trigger's run now holds ``day``'s wake (one conditional write; refused: another run has it)."""
        try:
            await client.update_item(**wakes.take_request(index, day, self.dag_run, now))
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    @staticmethod
    async def _open_days(client: Any, index: WorkIndex) -> list[str]:
        scan = OpenDaysScan(index)
        while (request := scan.next_request()) is not None:
            scan.add_page(await client.query(**request))
        return scan.days()
