"""The soak's end state, judged: each invariant held or not, and which known defects a violation points at.

A problem is attributed to a known defect (``DEFECTS``) only when its own
evidence has that defect's signature (e.g. a ``_work/`` staging object of a
COMPENSATED manifest); a violation counts as explained only when every one of
its problems is attributed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote_plus

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestState
from tools.soak.landing import LandingBook, Version
from tools.soak.observe import Observed, manifest_of

DEFECTS = {
    "old-days": "days older than yesterday are never watched again (planning.days_to_watch)",
    "sweep-blocks": "a sweep failure on one manifest fails the whole sweep task and blocks the ingest DAG's sensor",
    "readopt": "a retried/cleared ingest run re-adopts only manifests of days ready now",
    "alerts-forgotten": "a retried finalise forgets FAILED files' alerts",
    "late-output": "a manifest compensated while its run was still publishing keeps late output",
    "staging-left": "compensated manifests' staging objects (_work/) are never deleted",
    "long-keys": "keys longer than ~930 bytes overflow DynamoDB's key limit at intake",
    "unreadable-fails-run": "the Glue job fails a whole run on one unreadable (403) file",
}
EXAMPLES = 3
Problem = str | tuple[str, str]  # (what, DEFECTS key) when the problem has that defect's signature


@dataclass(frozen=True)
class Check:
    name: str
    held: bool
    detail: str = ""
    defects: tuple[str, ...] = ()  # keys of DEFECTS that explain every problem; empty: not (fully) explained

    def line(self) -> str:
        verdict = "held" if self.held else "VIOLATED"
        causes = "".join(f" [known defect: {DEFECTS[d]}]" for d in self.defects)
        return f"{verdict:<9}{self.name}: {self.detail}{causes}"


def check(name: str, problems: list[Problem], summary: str) -> Check:
    if not problems:
        return Check(name, True, summary)
    texts = [p if isinstance(p, str) else p[0] for p in problems]
    keys = {None if isinstance(p, str) else p[1] for p in problems}
    defects = () if None in keys else tuple(sorted(keys))
    return Check(name, False, f"{len(problems)} problem(s), e.g. {texts[:EXAMPLES]}", defects)


def _because(text: str, defect: str | None) -> Problem:
    return (text, defect) if defect else text


def allowed_states(version: Version, current: bool) -> set[FileState]:
    """The terminal states a version may end in."""
    if version.kind == "rejected":
        return {FileState.QUARANTINED}
    if version.kind == "unreadable":
        return {FileState.QUARANTINED, FileState.FAILED}
    if not current:  # overwritten: converted before its successor landed, or found superseded
        return {FileState.DONE, FileState.QUARANTINED, FileState.FAILED}
    return {FileState.DONE, FileState.FAILED}


def unfinished(versions: list[Version], seen_files: dict, name: str, summary: str, *, by_ingest: bool) -> Check:
    """Versions without a terminal record. A long key never registered has the long-key defect's signature; so has,
    when ``by_ingest`` (only ingest runs had their chance), a version of a day older than yesterday."""
    yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
    problems: list[Problem] = []
    for version in versions:
        record = seen_files.get(version.identity)
        if record is not None and record.state.terminal:
            continue
        what = f"{version.key[-50:]} ({version.day}): {record.state if record else 'never registered'}"
        if record is None and version.kind == "long_key":
            problems.append((what, "long-keys"))
        else:
            problems.append(_because(what, "old-days" if by_ingest and version.day < yesterday else None))
    return check(name, problems, summary)


def check_all(seen: Observed, book: LandingBook, *, failure_budget: int, max_attempts: int) -> list[Check]:
    """Every invariant of the brief, from what was observed and what was landed.

    :param failure_budget: compensations the soak's own kills and bursts can have caused per file at most;
        below ``max_attempts``, a FAILED file that was not made unreadable is a finding.
    """
    current = {v.identity for v in book.current().values()}
    by_identity = {v.identity: v for v in book.versions}
    records = {i: seen.files.get(i) for i in by_identity}
    done = {i for i, r in records.items() if r is not None and r.state is FileState.DONE}
    failed = {i for i, r in records.items() if r is not None and r.state is FileState.FAILED}
    compensated = {m for m, r in seen.manifests.items() if r.state is ManifestState.COMPENSATED}
    checks = [
        unfinished(
            book.versions, seen.files, "every version DONE, QUARANTINED or FAILED", f"{len(records)}", by_ingest=False
        ),
        _outcomes(records, by_identity, current),
        *_alerts(seen, failed),
        _collateral(records, by_identity, failed, failure_budget, max_attempts),
        _rows_reconcile(records, by_identity, done),
        *_rows(seen, by_identity, done, failed, compensated),
        *_queues(seen, book),
        *_objects(seen, compensated),
        check("no call refused by the roles' policies", seen.refused_calls, "none refused"),
    ]
    return checks


def _outcomes(records, by_identity, current) -> Check:
    problems: list[Problem] = []
    for identity, record in records.items():
        if record is None or not record.state.terminal:
            continue
        version = by_identity[identity]
        if record.state not in allowed_states(version, identity in current):
            problems.append(f"{version.kind} {identity[-60:]} ended {record.state}: {record.reason}")
    return check("each version's outcome fits what it is", problems, "data DONE, rejected QUARANTINED, ...")


def _alerts(seen: Observed, failed: set[str]) -> list[Check]:
    unalerted: list[Problem] = [(i[-70:], "alerts-forgotten") for i in sorted(failed - seen.alerted)]
    metric: list[Problem] = [] if seen.failed_files_metric >= len(failed) else [f"sum {seen.failed_files_metric}"]
    return [
        check("every FAILED version alerted (SNS)", unalerted, f"{len(failed)} FAILED, {len(seen.alerted)} alerted"),
        check("CloudWatch FailedFiles >= FAILED versions", metric, f"sum {seen.failed_files_metric:.0f}"),
    ]


def _collateral(records, by_identity, failed, budget: int, max_attempts: int) -> Check:
    """FAILED files the soak did not make unreadable: the unreadable file's manifest-mates always count, the others
    only when the soak's kills and bursts cannot have used up their attempts."""
    unreadable_manifests = {records[i].manifest_id for i in failed if by_identity[i].kind == "unreadable"}
    collateral = [i for i in sorted(failed) if by_identity[i].kind != "unreadable"]
    problems: list[Problem] = []
    for identity in collateral:
        what = f"{identity[-60:]} (manifest {records[identity].manifest_id})"
        if records[identity].manifest_id in unreadable_manifests:
            problems.append((what, "unreadable-fails-run"))
        elif budget < max_attempts:
            problems.append(what)
    excused = "" if budget < max_attempts else ", the others excused"
    summary = f"{len(collateral)} FAILED besides unreadable ones; kill+burst budget {budget} vs {max_attempts}{excused}"
    return check("FAILED only where the soak made a file fail", problems, summary)


def _rows_reconcile(records, by_identity, done) -> Check:
    problems: list[Problem] = []
    for identity in sorted(done):
        record, version = records[identity], by_identity[identity]
        ledger = (record.rows_in, record.rows_out, record.rows_quarantined)
        if record.rows_in != record.rows_out + record.rows_quarantined:
            problems.append(f"{identity[-50:]}: in {record.rows_in} != {record.rows_out} + {record.rows_quarantined}")
        elif ledger != (version.lines, len(version.rows), version.bad):
            problems.append(
                f"{identity[-50:]}: ledger {ledger}, landed {(version.lines, len(version.rows), version.bad)}"
            )
    totals = [sum(getattr(records[i], f) for i in done) for f in ("rows_in", "rows_out", "rows_quarantined")]
    return check("rows in = rows out + quarantined", problems, "{} = {} + {}".format(*totals))


def _rows(seen: Observed, by_identity, done, failed, compensated) -> list[Check]:
    """count == distinct, and the distinct set == the rows of the DONE versions (FAILED versions' rows excluded)."""
    sources: dict[str, list[str]] = {}
    for event_id, manifest_id in seen.rows:
        sources.setdefault(event_id, []).append(manifest_id)

    def late(event_id: str) -> str | None:
        return "late-output" if any(m in compensated for m in sources[event_id]) else None

    dupes = [_because(f"{e} x{len(ms)}", late(e)) for e, ms in sources.items() if len(ms) > 1]
    expected = set().union(*(by_identity[i].rows for i in done)) if done else set()
    wrong: list[Problem] = [f"missing {e}" for e in sorted(expected - set(sources))]
    wrong += [_because(f"unexpected {e}", late(e)) for e in sorted(set(sources) - expected)]
    bad = sum(by_identity[i].bad for i in done)
    lines = [] if seen.quarantined_lines == bad else [f"{seen.quarantined_lines} lines in quarantine, expected {bad}"]
    return [
        check("no duplicate row (count == distinct)", dupes, f"{len(seen.rows)} rows, {len(sources)} distinct"),
        check(
            "distinct rows = expected rows of DONE versions", wrong, f"{len(expected)} (without {len(failed)} FAILED)"
        ),
        check("quarantined lines = bad lines of DONE versions", lines, f"{bad} lines"),
    ]


def _queues(seen: Observed, book: LandingBook) -> list[Check]:
    left: list[Problem] = [f"{name} {n}" for name, n in seen.queue.items() if n]
    long_keys = [quote_plus(v.key, safe="/") for v in book.versions if v.kind == "long_key"]
    unexpected = Counter(seen.dlq_bodies) - Counter(book.malformed_bodies)
    missing = Counter(book.malformed_bodies) - Counter(seen.dlq_bodies)
    problems: list[Problem] = [
        _because(f"unexpected in DLQ: {body[:100]}", "long-keys" if any(k in body for k in long_keys) else None)
        for body in unexpected.elements()
    ]
    problems += [f"malformed message not in the DLQ: {body[:60]}" for body in missing.elements()]
    return [
        check("queue drained (visible + in flight = 0)", left, "0 visible, 0 in flight"),
        check("DLQ holds exactly the injected malformed messages", problems, f"{len(seen.dlq_bodies)} messages"),
    ]


def _objects(seen: Observed, compensated: set[str]) -> list[Check]:
    """Every output, staging and quarantine object is accounted for by a SUCCEEDED manifest's result."""
    succeeded = {m for m, r in seen.manifests.items() if r.state is ManifestState.SUCCEEDED}
    results = {m: r for m, r in seen.results.items() if m in succeeded}
    listed = {o.path for r in results.values() for o in r.output_files}

    def late(uri: str) -> str | None:
        return "late-output" if manifest_of(uri) in compensated else None

    orphans = [_because(u, late(u)) for u in seen.parquet if u not in listed]
    orphans += [_because(u, late(u)) for u in seen.other_dataset_objects]
    staging = [_because(u, "staging-left" if manifest_of(u) in compensated else None) for u in seen.staging]
    quarantine = [_because(u, late(u)) for u in seen.quarantine_objects if manifest_of(u) not in results]
    stray_results = [_because(m, "late-output" if m in compensated else None) for m in seen.results if m not in results]
    return [
        check("every Parquet object listed by a SUCCEEDED manifest's result", orphans, f"{len(seen.parquet)} objects"),
        check("every output a result lists exists", sorted(listed - set(seen.parquet)), f"{len(listed)} listed"),
        check("no work-in-progress object left (_work/)", staging, "none"),
        check("no quarantine object of a manifest without a result", quarantine, f"{len(seen.quarantine_objects)}"),
        check("every result belongs to a SUCCEEDED manifest", stray_results, f"{len(seen.results)} results"),
    ]
