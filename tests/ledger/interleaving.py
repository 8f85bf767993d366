"""A seeded driver that interleaves the ledger's operations from several workers at once, and a model to judge it.

Each step, every worker is given one operation (chosen from the seed and the
ledger as the last step left it) and the workers run them at the same moment,
in threads, each with its own client: concurrent requests, as the pipeline's
tasks and the operators send them. After every step the whole table is read
and held against the model (``check``); a last, sequential phase converts what
is left (``drain``) and the end state is judged too.

The model is what the operations reported: which versions were registered or
rejected, which manifest took which files, which completion recorded a file
DONE, which compensation reported a file FAILED, which alerts were published.
Operations refused with ``IllegalTransitionError`` lost a race, as they may;
any other exception is a violation.

Time is virtual (``VirtualClock``): it moves between steps, so leases run out
and idle days close within seconds.
"""

from __future__ import annotations

import random
import sys
import threading
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ndjson_pipeline import clock
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.landing import registration_for
from ndjson_pipeline.ledger import GroupLimits, IllegalTransitionError, Ledger, ManifestState
from ndjson_pipeline.ledger.codec import decode_item
from ndjson_pipeline.ledger.records import Group, GroupState, ManifestRecord
from ndjson_pipeline.manifest import FileResult

DAYS = ("2026-11-23", "2026-11-24")
MAX_ATTEMPTS = 2
LIMITS = GroupLimits(max_files=3, max_bytes=10**12)
MANIFEST_FILES = 6
SUPERSEDED = "superseded: no longer has its eTag"


class VirtualClock:
    """The ledger's clock during a run: real time plus an offset the driver moves between steps."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def utcnow(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def use_clock(monkeypatch: Any, virtual: VirtualClock) -> None:
    """Every module of the pipeline that reads the clock reads ``virtual``."""
    for name, module in list(sys.modules.items()):
        if name.startswith("ndjson_pipeline") and getattr(module, "utcnow", None) is clock.utcnow:
            monkeypatch.setattr(module, "utcnow", virtual.utcnow)


@dataclass
class Conversion:
    """A manifest as the model knows it; ``outcomes`` once its run wrote a result."""

    manifest_id: str
    day: str
    files: tuple[FileVersion, ...]
    outcomes: dict[str, FileResult] | None = None
    run_lock: threading.Lock = field(default_factory=threading.Lock)  # stopping a run waits for it


@dataclass
class Model:
    versions: dict[str, str] = field(default_factory=dict)  # accepted identity -> day
    rejected: set[str] = field(default_factory=set)
    keys: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # day -> keys landed
    offered: list[tuple[str, str, str]] = field(default_factory=list)  # (day, key, etag) registrations sent
    conversions: dict[str, Conversion] = field(default_factory=dict)
    done_by: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    failed_by: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    alerted: set[tuple[str, str]] = field(default_factory=set)  # (identity, manifest) alerts published
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def next_number(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def add_conversion(self, manifest_id: str, day: str, files: tuple[FileVersion, ...]) -> None:
        with self.lock:
            self.conversions.setdefault(manifest_id, Conversion(manifest_id, day, files))


@dataclass(frozen=True)
class View:
    """The whole table, read consistently: what the next step's choices and the invariants look at."""

    files: dict[str, dict[str, Any]]  # identity -> file item
    groups: dict[str, Group]
    manifests: dict[str, ManifestRecord]
    open_days: set[str]

    def group_of(self, identity: str) -> Group | None:
        item = self.files.get(identity)
        return self.groups.get(str(item.get("group_id"))) if item else None

    def state_of(self, identity: str) -> FileState | None:
        group = self.group_of(identity)
        if group is not None:
            return group.file_state(identity)
        item = self.files.get(identity)
        return FileState(item["state"]) if item and "state" in item else None


def read_view(client: Any, table: str, ttl_attribute: str) -> View:
    files, groups, manifests, open_days = {}, {}, {}, set()
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**request)
        for raw in page["Items"]:
            item = decode_item(raw)
            pk = str(item["pk"])
            if pk.startswith("F#"):
                files[f"{item['bucket']}/{item['key']}#{item['etag']}"] = item
            elif pk.startswith("G#"):
                group = Group.from_item(item, ttl_attribute)
                groups[group.group_id] = group
            elif pk.startswith("M#"):
                record = ManifestRecord.from_item(item, ttl_attribute)
                manifests[record.manifest_id] = record
            else:
                open_days.add(str(item["sk"]).split("#", 1)[0])
        if "LastEvaluatedKey" not in page:
            return View(files, groups, manifests, open_days)
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Worker:
    """One concurrent actor: its own client and ledger, and the operations it may be given."""

    def __init__(self, number: int, ledger: Ledger, model: Model, virtual: VirtualClock, settings: Any) -> None:
        self.number = number
        self.ledger = ledger
        self.model = model
        self.clock = virtual
        self.settings = settings
        self.bucket = settings.names.landing_bucket

    # ------------------------------------------------------------------ the pipeline's operations

    def register(self, rng: random.Random, day: str) -> str:
        regs = []
        with self.model.lock:
            for _ in range(rng.randint(1, 4)):
                roll = rng.random()
                if roll < 0.2 and self.model.offered:  # a duplicate notification, or the reconcile's listing
                    old_day, key, etag = rng.choice(self.model.offered)
                    regs.append(self._registration(old_day, key, etag))
                    continue
                if roll < 0.35 and self.model.keys[day]:  # the key overwritten: a new version
                    key = rng.choice(self.model.keys[day])
                elif roll < 0.42:
                    key = f"incoming/{day.replace('-', '/')}/notes-{self.model.counter}.txt"  # rejected at intake
                else:
                    key = f"incoming/{day.replace('-', '/')}/f-{self.model.counter}.ndjson"
                    self.model.keys[day].append(key)
                self.model.counter += 1
                etag = f"e{self.model.counter}"
                self.model.offered.append((day, key, etag))
                regs.append(self._registration(day, key, etag))
        outcome = self.ledger.register(regs)
        with self.model.lock:
            accepted = {r.file.identity: r.day for r in regs if not r.rejection}
            for identity in [*outcome.registered, *outcome.already_known]:
                if identity in accepted:
                    self.model.versions[identity] = accepted[identity]
            self.model.rejected.update(outcome.quarantined)
        return f"register {len(regs)}: +{len(outcome.registered)} known {len(outcome.already_known)}"

    def _registration(self, day: str, key: str, etag: str) -> Any:
        return registration_for(self.bucket, key, 100, etag, f"{day}T01:00:00+00:00", self.settings)

    def claim(self, rng: random.Random, day: str) -> str:
        manifest = self.ledger.claim_batch(
            day,
            max_files=MANIFEST_FILES,
            max_bytes=10**12,
            lease_seconds=rng.choice([90, 900]),
            owner=f"w{self.number}",
        )
        if manifest is None:
            return f"claim {day}: nothing"
        self.model.add_conversion(manifest.manifest_id, day, manifest.files)
        return f"claim {day}: {manifest.manifest_id} ({len(manifest.files)})"

    def run(self, rng: random.Random, manifest_id: str) -> str:
        """A conversion run: adopted by the ledger (refused once fenced), then its result written."""
        conversion = self.model.conversions[manifest_id]
        with conversion.run_lock:
            if not self.ledger.attach_run(manifest_id, f"run-{self.number}-{rng.random():.6f}"):
                return f"run {manifest_id}: refused"
            self.ledger.extend_lease(manifest_id, 900)
            if conversion.outcomes is None:
                conversion.outcomes = {f.identity: _outcome(rng, f) for f in conversion.files}
        return f"run {manifest_id}: result"

    def finalise(self, manifest_id: str) -> str:
        conversion = self.model.conversions[manifest_id]
        record = self.ledger.get_manifest(manifest_id)
        if record is None or record.state is ManifestState.COMPENSATED:
            return f"finalise {manifest_id}: compensated already"
        if conversion.outcomes is not None:
            return self._complete(conversion)
        if record.state is ManifestState.SUCCEEDED:
            self.model.violations.append(f"{manifest_id} SUCCEEDED without a result")
            return "finalise: SUCCEEDED without a result"
        if not self.ledger.fence_manifest(manifest_id):
            return f"finalise {manifest_id}: closed meanwhile"
        return self._compensate_fenced(conversion)

    def _complete(self, conversion: Conversion) -> str:
        assert conversion.outcomes is not None
        self.ledger.complete_manifest(conversion.manifest_id, list(conversion.outcomes.values()))
        with self.model.lock:
            for identity, outcome in conversion.outcomes.items():
                if outcome.outcome is FileState.DONE:
                    self.model.done_by[identity].add(conversion.manifest_id)
        return f"complete {conversion.manifest_id}"

    def _compensate_fenced(self, conversion: Conversion) -> str:
        with conversion.run_lock:  # stop its runs: a run that got in before the fence finishes first
            pass
        if conversion.outcomes is not None:
            return self._complete(conversion)
        failed = self.ledger.compensate_manifest(conversion.manifest_id, max_attempts=MAX_ATTEMPTS, reason="failed")
        with self.model.lock:
            for identity in failed:
                self.model.failed_by[identity].add(conversion.manifest_id)
        return f"compensate {conversion.manifest_id}: {len(failed)} FAILED"

    def sweep(self) -> str:
        """The sweeper: compensate expired claims, publish alerts no finaliser published, close idle days."""
        now = self.clock.utcnow()
        done = []
        for day in self.ledger.open_days():
            for manifest_id in self.ledger.expired_manifests(day, now):
                if manifest_id not in self.model.conversions:
                    # Claimed by a step running beside this one, which records it once its claim returns.
                    held = self.ledger.manifest_of(self.ledger.get_manifest(manifest_id))
                    self.model.add_conversion(manifest_id, held.day, held.files)
                if self.ledger.fence_manifest(manifest_id, lease_expired_at=now):
                    done.append(self._compensate_fenced(self.model.conversions[manifest_id]))
            for manifest_id, identities in self.ledger.pending_alerts(day).items():
                self._publish(manifest_id, identities)
            done.append(f"{day} {self.ledger.close_day_if_idle(day)}")
        return f"sweep: {done}"

    def publish_alerts(self, manifest_id: str) -> str:
        pending = self.ledger.pending_alerts_of(manifest_id)
        if pending:
            self._publish(manifest_id, pending)
        return f"alerts {manifest_id}: {len(pending)}"

    def _publish(self, manifest_id: str, identities: list[str]) -> None:
        with self.model.lock:
            self.model.alerted.update((identity, manifest_id) for identity in identities)
        self.ledger.clear_alerts(manifest_id, identities)

    def close_day(self, day: str) -> str:
        return f"close {day}: {self.ledger.close_day_if_idle(day)}"

    # ------------------------------------------------------------------ the operators' actions

    def redo(self, manifest_id: str) -> str:
        """A clear of a compensated conversion (``steps.redoing``): the end of its redo chain is redone.

        Every file still FAILED in that manifest's groups must be taken by the redo (or moved by a requeue).
        """
        while (successor := self.ledger.successor_of(manifest_id)) is not None:
            manifest_id = successor
        record = self.ledger.get_manifest(manifest_id)
        if record is None or record.state is not ManifestState.COMPENSATED:
            return f"redo {manifest_id}: not compensated"
        table = self.ledger._table
        failed = [i for g in table.groups(record.groups).values() if g.state is GroupState.FAILED for i in g.identities]
        successor = self.ledger.redo_compensated(manifest_id, lease_seconds=900)
        if successor is not None:
            held = self.ledger.manifest_of(self.ledger.get_manifest(successor))
            self.model.add_conversion(successor, held.day, held.files)
        still = [i for i, r in table.files(failed, consistent=True).items() if r.state is FileState.FAILED]
        if still:
            self.model.violations.append(f"redo of {manifest_id} returned {successor} and left FAILED: {still}")
        return f"redo {manifest_id}: {successor}"

    def requeue(self, identity: str) -> str:
        self.ledger.requeue_failed(identity)
        return f"requeue {identity}"

    def replay(self, identity: str) -> str:
        self.ledger.replay_quarantined(identity)
        return f"replay {identity}"

    def restate(self, manifest_id: str) -> str:
        conversion = self.model.conversions[manifest_id]
        record = self.ledger.get_manifest(manifest_id)
        if record is None or record.state is not ManifestState.SUCCEEDED or conversion.outcomes is None:
            return f"restate {manifest_id}: not succeeded"
        held = set(self.ledger.identities_of(record))
        done = [o for i, o in conversion.outcomes.items() if i in held and o.outcome is FileState.DONE]
        self.ledger.restate_files(manifest_id, [_restated(o) for o in done])
        return f"restate {manifest_id}: {len(done)}"


def _outcome(rng: random.Random, file: FileVersion) -> FileResult:
    roll = rng.random()
    if roll < 0.1:
        return FileResult(file.identity, file.uri, FileState.QUARANTINED, "not decodable: truncated gzip", 2, 0, 0, 2)
    if roll < 0.15:
        return FileResult(file.identity, file.uri, FileState.QUARANTINED, SUPERSEDED)
    return FileResult(file.identity, file.uri, FileState.DONE, None, 4, 3, 0, 1)


def _restated(outcome: FileResult) -> FileResult:
    return FileResult(outcome.identity, outcome.uri, FileState.DONE, None, 4, 4, 1, 0)


# ---------------------------------------------------------------------- choosing a step's operations

Operation = Callable[[], str]


def choose(rng: random.Random, worker: Worker, view: View, focus: str | None) -> Operation:
    """One operation for ``worker`` from what ``view`` shows, often about the step's ``focus`` manifest."""
    manifests = view.manifests
    by_state = defaultdict(list)
    for record in manifests.values():
        by_state[record.status].append(record.manifest_id)
    failed = sorted(i for i in view.files if view.state_of(i) is FileState.FAILED)
    replayable = sorted(
        i
        for i in view.files
        if view.state_of(i) is FileState.QUARANTINED
        and (g := view.group_of(i)) is not None
        and not (g.results[i].reason or "").startswith("superseded")
    )
    if focus is not None and rng.random() < 0.5:
        focused = view.manifests[focus]
        in_focus = [i for g in focused.groups if g in view.groups for i in view.groups[g].identities]
        failed = [i for i in failed if i in in_focus] or failed
    day = rng.choice(DAYS)
    options: list[tuple[float, Operation | None]] = [
        (3, lambda: worker.register(rng, day)),
        (3, lambda: worker.claim(rng, day)),
        (3, _pick(rng, by_state["CLAIMED"], focus, lambda m: worker.run(rng, m))),
        (3, _pick(rng, by_state["CLAIMED"] + by_state["COMPENSATING"], focus, worker.finalise)),
        (2, lambda: worker.sweep()),
        (2, _pick(rng, by_state["COMPENSATED"], focus, worker.redo)),
        (2, _pick(rng, failed, None, worker.requeue)),
        (1, _pick(rng, replayable, None, worker.replay)),
        (1, _pick(rng, by_state["SUCCEEDED"], None, worker.restate)),
        (1, _pick(rng, by_state["COMPENSATED"], focus, worker.publish_alerts)),
        (1, lambda: worker.close_day(day)),
    ]
    available = [(weight, op) for weight, op in options if op is not None]
    return rng.choices([op for _, op in available], [weight for weight, _ in available])[0]  # type: ignore[return-value]


def _pick(rng: random.Random, candidates: list[str], focus: str | None, op: Callable[[str], str]) -> Operation | None:
    if not candidates:
        return None
    target = focus if focus in candidates and rng.random() < 0.5 else rng.choice(sorted(candidates))
    return lambda: op(target)


def run_step(operations: list[Operation], model: Model) -> list[str]:
    """Run one operation per worker, all started at the same moment; what each reported."""
    barrier = threading.Barrier(len(operations))
    reports = [""] * len(operations)

    def work(index: int, op: Operation) -> None:
        barrier.wait()
        try:
            reports[index] = op()
        except IllegalTransitionError as exc:
            reports[index] = f"refused: {exc}"
        except Exception as exc:  # any other error is a violation: the operation stopped half decided
            reports[index] = f"ERROR {exc!r}"
            with model.lock:
                model.violations.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")

    threads = [threading.Thread(target=work, args=(i, op)) for i, op in enumerate(operations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reports


# ---------------------------------------------------------------------- the invariants


def check(view: View, model: Model, *, final: bool = False) -> list[str]:
    """What the table shows that the model forbids (empty: every invariant holds)."""
    problems: list[str] = []
    members: dict[str, list[str]] = defaultdict(list)
    for group in view.groups.values():
        for identity in group.identities:
            members[identity].append(group.group_id)
    for identity in model.versions:
        item = view.files.get(identity)
        if item is None:
            problems.append(f"lost: {identity} has no item")
            continue
        if members[identity] != [item.get("group_id")]:
            problems.append(
                f"{identity} is listed by groups {members[identity]}, its item names {item.get('group_id')}"
            )
    for identity in model.rejected:
        if view.state_of(identity) is not FileState.QUARANTINED:
            problems.append(f"rejected {identity} is {view.state_of(identity)}")
    phantom = set(members) - set(model.versions)
    if phantom:
        problems.append(f"groups list versions never registered: {sorted(phantom)[:3]}")
    problems += _open_manifests(view)
    for identity, manifests in model.done_by.items():
        if len(manifests) > 1:
            problems.append(f"converted twice: {identity} DONE by {sorted(manifests)}")
    for identity in model.versions:
        group = view.group_of(identity)
        if group is None:
            continue
        state = group.file_state(identity)
        if state is FileState.DONE and model.done_by[identity] != {group.manifest_id}:
            problems.append(f"{identity} DONE by {group.manifest_id}, the model saw {model.done_by[identity]}")
        if state is FileState.FAILED:
            if group.ended_by not in model.failed_by[identity]:
                problems.append(f"{identity} FAILED by {group.ended_by}, unreported")
            alerted = (identity, group.ended_by) in model.alerted
            if not group.alert_pending and not alerted:
                problems.append(f"{identity} FAILED by {group.ended_by}: alert cleared but never published")
            if final and not alerted:
                problems.append(f"{identity} ended FAILED without an alert")
        if final and state not in (FileState.DONE, FileState.QUARANTINED, FileState.FAILED):
            problems.append(f"{identity} ended {state}")
    spurious = {(i, m) for i, m in model.alerted if m not in model.failed_by[i]}
    if spurious:
        problems.append(f"alerts for versions their manifest never failed: {sorted(spurious)[:3]}")
    problems += _closed_days(view, model)
    return problems


def _open_manifests(view: View) -> list[str]:
    problems = []
    holders: dict[str, list[str]] = defaultdict(list)
    for record in view.manifests.values():
        if record.state is not ManifestState.CLAIMED:
            continue
        for group_id in record.groups:
            holders[group_id].append(record.manifest_id)
            group = view.groups.get(group_id)
            if group is None or (group.state, group.manifest_id) != (GroupState.CLAIMED, record.manifest_id):
                state = None if group is None else (group.state, group.manifest_id)
                problems.append(f"open manifest {record.manifest_id} names group {group_id}, found {state}")
    for group in view.groups.values():
        if group.state is GroupState.CLAIMED and holders[group.group_id] != [group.manifest_id]:
            problems.append(f"group {group.group_id} claimed by {group.manifest_id}, held by {holders[group.group_id]}")
        if group.state in (GroupState.PENDING, GroupState.FAILED) and group.manifest_id is not None:
            problems.append(f"{group.state} group {group.group_id} names manifest {group.manifest_id}")
    return problems


def _closed_days(view: View, model: Model) -> list[str]:
    problems = []
    for day in set(model.versions.values()) - view.open_days:
        work = [
            g.group_id
            for g in view.groups.values()
            if g.day == day and (g.state in (GroupState.PENDING, GroupState.CLAIMED) or g.alert_pending)
        ]
        work += [m.manifest_id for m in view.manifests.values() if m.day == day and m.state is ManifestState.CLAIMED]
        if work:
            problems.append(f"closed day {day} holds open work: {work[:3]}")
    return problems


def pick_focus(rng: random.Random, view: View) -> str | None:
    """The manifest a step's workers gather on: a compensated one most often, where operators and redos race."""
    compensated = sorted(m for m, r in view.manifests.items() if r.state is ManifestState.COMPENSATED)
    claimed = sorted(m for m, r in view.manifests.items() if r.state is ManifestState.CLAIMED)
    pool = compensated if compensated and rng.random() < 0.7 else claimed
    return rng.choice(pool) if pool else None


def drain(worker: Worker, virtual: VirtualClock, read: Callable[[], View], rounds: int = 12) -> None:
    """Sequentially, as the pipeline would once the operators stop: convert whatever is open or pending."""
    rng = random.Random(0)
    for _ in range(rounds):
        virtual.advance(2000)  # every lease runs out: the sweep compensates what no finaliser closed
        worker.sweep()
        for record in read().manifests.values():
            if record.state is ManifestState.CLAIMED:
                worker.run(rng, record.manifest_id)
                worker.finalise(record.manifest_id)
        for day in DAYS:
            while (claimed := worker.claim(rng, day)) and not claimed.endswith("nothing"):
                manifest_id = claimed.split(": ")[1].split(" ")[0]
                worker.run(rng, manifest_id)
                worker.finalise(manifest_id)
        worker.sweep()  # publishes the alerts of what the finalisers failed
        view = read()
        if not any(
            g.state in (GroupState.PENDING, GroupState.CLAIMED) or g.alert_pending for g in view.groups.values()
        ):
            return
