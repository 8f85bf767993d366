"""The listing reconcile: the safety net for lost S3 notifications."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.landing import day_listing_pages, registration_for
from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.ledger.maintenance import is_superseded
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError

log = logging.getLogger(__name__)


class DayTooOldError(PipelineError):
    """A day is too old to close again: its raw files are expiring and the ledger forgets converted versions."""


def check_day_can_be_closed(day: str, settings: PipelineSettings, today: date | None = None) -> None:
    """Refuse a day whose landing objects may have expired (and, later, whose ledger records may have).

    Terminal records outlast the landing data (``terminal_ttl_days`` >= landing
    retention + lag, checked in settings), so no listing shows a version the
    ledger forgot. A day older than the landing retention is refused outright:
    its listing is incomplete, so its report would be wrong, and past
    ``terminal_ttl_days`` its converted versions would look new.
    """
    age = ((today or utcnow().date()) - date.fromisoformat(day)).days
    retention = settings.landing_retention_days
    if age >= retention:
        raise DayTooOldError(
            f"day {day} is {age} days old and cannot be closed again: its raw files expire after {retention} days "
            f"(resources.json landing_retention) and the ledger forgets converted versions after "
            f"terminal_ttl_days ({settings.terminal_ttl_days}); re-registering them would convert them a second "
            f"time. Days younger than {retention} days can be closed; the Parquet of this day is final."
        )


@dataclass
class ReconcileReport:
    day: str
    seen: int = 0
    already_known: int = 0
    registered: int = 0
    quarantined: int = 0
    states: Counter[str] = field(default_factory=Counter)
    # Versions QUARANTINED as superseded that S3 still lists with their eTag: their rows are not in the lake.
    present_but_superseded: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "states"}, "states": dict(self.states)}


def reconcile_day(
    s3: Any, ledger: Ledger, settings: PipelineSettings, bucket: str, day: str, *, today: date | None = None
) -> ReconcileReport:
    """List one landing day and register every object version the ledger lacks.

    The safety net for lost notifications: works one listing page (1,000 keys)
    at a time, so memory does not grow with the day. ``states`` counts the
    ledger state of every object seen, which is what a completeness check needs.
    A version the ledger holds QUARANTINED as superseded while S3 lists it with
    that very eTag is named in ``present_but_superseded``: "S3 no longer holds
    it" was wrong (or the same bytes came back), its rows are missing, and an
    operator replays it (``replay_quarantined``).
    A day too old to close again is refused (``check_day_can_be_closed``).
    """
    check_day_can_be_closed(day, settings, today)
    report = ReconcileReport(day=day)
    for objects in day_listing_pages(s3, bucket, day, settings):
        regs = {
            reg.file.identity: reg
            for reg in (
                registration_for(
                    bucket,
                    obj["Key"],
                    int(obj["Size"]),
                    obj["ETag"].strip('"'),
                    obj["LastModified"].astimezone(UTC).isoformat(),
                    settings,
                )
                for obj in objects
            )
        }
        records = ledger.get_files(list(regs))
        states = {identity: record.state for identity, record in records.items()}
        report.present_but_superseded += [i for i, r in records.items() if is_superseded(r.state, r.reason)]
        missing = [reg for identity, reg in regs.items() if identity not in states]
        outcome = ledger.register(missing)
        report.seen += len(regs)
        report.already_known += len(states) + len(outcome.already_known)
        report.registered += len(outcome.registered)
        report.quarantined += len(outcome.quarantined)
        report.states.update(str(s) for s in states.values())
        report.states += Counter(PENDING=len(outcome.registered), QUARANTINED=len(outcome.quarantined))
        for identity in outcome.registered:
            log.info(
                "reconcile registered a version no notification announced: %s",
                regs[identity].file.uri,
                extra={"day": day, "uri": regs[identity].file.uri},
            )
    log.info(
        "reconcile %s: %d seen, %d already known, %d newly registered, %d quarantined",
        day,
        report.seen,
        report.already_known,
        report.registered,
        report.quarantined,
        extra={
            "day": day,
            "seen": report.seen,
            "already_known": report.already_known,
            "registered": report.registered,
            "quarantined": report.quarantined,
        },
    )
    if report.present_but_superseded:
        log.error(
            "reconcile %s: %d versions QUARANTINED as superseded are still in S3 with their eTag (replay them): %s",
            day,
            len(report.present_but_superseded),
            report.present_but_superseded[:10],
            extra={"day": day, "present_but_superseded": len(report.present_but_superseded)},
        )
    return report
