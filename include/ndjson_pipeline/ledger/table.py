"""One ledger table behind a boto3 client: typed reads, index pages and the conditional update.

The operation modules (registration, claims, transitions) write through this;
the ``Ledger`` facade reads through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ndjson_pipeline.files import FileId
from ndjson_pipeline.ledger.codec import decode_item, encode_item
from ndjson_pipeline.ledger.errors import IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.records import FileRecord, Group, ManifestRecord, file_version_of
from ndjson_pipeline.ledger.schema import TableSchema, pending_partition
from ndjson_pipeline.ledger.transactions import CONFLICT_RETRIES, backoff
from ndjson_pipeline.ledger.work import WorkIndex

BATCH_GET_LIMIT = 100


@dataclass(frozen=True)
class LedgerTable:
    """The table, its schema, and how long terminal items are kept.

    :param client: a boto3 ``dynamodb`` client.
    :param name: the table name.
    :param schema: attribute names and key formats.
    :param terminal_ttl_days: days a terminal item is kept before DynamoDB expires it.
    """

    client: Any
    name: str
    schema: TableSchema
    terminal_ttl_days: int

    @property
    def work_index(self) -> WorkIndex:
        return WorkIndex.of(self.name, self.schema)

    def expires_at(self, now: datetime) -> int:
        return int((now + timedelta(days=self.terminal_ttl_days)).timestamp())

    # ----------------------------------------------------------------- reads

    def get(self, key: dict[str, str]) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.name, Key=encode_item(key), ConsistentRead=True)
        return decode_item(response["Item"]) if "Item" in response else None

    def file(self, file_id: FileId) -> FileRecord | None:
        """A version's record: its item, and its group's state (read consistently)."""
        return self.files([str(file_id)], consistent=True).get(str(file_id))

    def files(self, identities: Iterable[str], *, consistent: bool = False) -> dict[str, FileRecord]:
        """Records of many versions by identity (absent ones are left out), each with its group's state.

        A version whose item and group disagree (read between the parts of one
        transaction, or its ended group expired first) is read again
        consistently, and left out if they still do.
        """
        records, unsettled = self._records(identities, consistent)
        if unsettled and not consistent:
            records.update(self._records(unsettled, True)[0])
        return records

    def _records(self, identities: Iterable[str], consistent: bool) -> tuple[dict[str, FileRecord], list[str]]:
        keys = [self.schema.file_key(FileId.parse(identity)) for identity in sorted(set(identities))]
        items = list(self.batch_get(keys, consistent=consistent))
        groups = self.groups((str(i["group_id"]) for i in items if "group_id" in i), consistent=consistent)
        members = {g.group_id: set(g.identities) for g in groups.values()}
        records, unsettled = {}, []
        for item in items:
            identity = file_version_of(item).identity
            group = groups.get(str(item["group_id"])) if "group_id" in item else None
            if "group_id" in item and identity not in members.get(str(item["group_id"]), ()):
                unsettled.append(identity)
                continue
            records[identity] = FileRecord.from_items(item, group, self.schema.ttl_attribute)
        return records, unsettled

    def group(self, group_id: str) -> Group | None:
        item = self.get(self.schema.group_key(group_id))
        return None if item is None else Group.from_item(item, self.schema.ttl_attribute)

    def groups(self, group_ids: Iterable[str], *, consistent: bool = True) -> dict[str, Group]:
        """Groups by id (absent ones are left out); consistently, unless a report's eventual view will do."""
        keys = [self.schema.group_key(g) for g in sorted(set(group_ids))]
        found = (Group.from_item(i, self.schema.ttl_attribute) for i in self.batch_get(keys, consistent=consistent))
        return {g.group_id: g for g in found}

    def groups_of(self, record: ManifestRecord, *, all_held: bool = True) -> list[Group]:
        """A manifest's groups, read consistently, in id order.

        While a manifest is open every group it names exists (only a terminal
        file leaves its group); once it ended, a group whose files were all
        requeued or replayed is gone: ``all_held=False`` reads the others.
        """
        found = self.groups(record.groups)
        missing = sorted(record.groups - set(found))
        if missing and all_held:
            raise LedgerError(f"manifest {record.manifest_id}: groups {missing[:3]} have no ledger record")
        return [found[g] for g in sorted(found)]

    def manifest(self, manifest_id: str) -> ManifestRecord | None:
        item = self.get(self.schema.manifest_key(manifest_id))
        return None if item is None else ManifestRecord.from_item(item, self.schema.ttl_attribute)

    def require_manifest(self, manifest_id: str) -> ManifestRecord:
        record = self.manifest(manifest_id)
        if record is None:
            raise LedgerError(f"manifest {manifest_id} has no ledger record")
        return record

    def batch_get(
        self, keys: list[dict[str, str]], *, attributes: tuple[str, ...] = (), consistent: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Items of many keys (absent ones are left out), 100 keys per request, unprocessed keys retried."""
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            chunk = keys[start : start + BATCH_GET_LIMIT]
            spec: dict[str, Any] = {"Keys": [encode_item(k) for k in chunk], "ConsistentRead": consistent}
            if attributes:
                names = {f"#a{n}": name for n, name in enumerate(attributes)}
                spec["ProjectionExpression"] = ", ".join(names)
                spec["ExpressionAttributeNames"] = names
            request: dict[str, Any] = {self.name: spec}
            for attempt in range(CONFLICT_RETRIES):
                response = self.client.batch_get_item(RequestItems=request)
                for raw in response["Responses"].get(self.name, []):
                    yield decode_item(raw)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                backoff(attempt)
            else:
                raise LedgerError(f"batch read of {len(chunk)} ledger items stayed unprocessed")

    def query(self, partition: str, page_size: int, upper_sort_key: str | None = None) -> Iterator[dict[str, Any]]:
        """Every item of one work-index partition, one bounded page at a time."""
        request = self.work_index.query(partition, page_size=page_size, upper_sort_key=upper_sort_key)
        while True:
            page = self.client.query(**request)
            for raw in page.get("Items", []):
                yield decode_item(raw)
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def pending_items(self, day: str, page_size: int, start_shard: int) -> Iterator[dict[str, Any]]:
        """A day's pending groups as the index projects them, shard after shard from ``start_shard``, oldest first
        within a shard."""
        shards = self.schema.pending_shards
        for offset in range(shards):
            yield from self.query(pending_partition(day, (start_shard + offset) % shards), page_size)

    # ----------------------------------------------------------------- writes

    def conditional_update(
        self, key: dict[str, str], update: str, condition: str, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Apply ``update`` if ``condition`` holds; None when applied, else the item as it was (``{}``: absent).

        Expressions name attributes with ``#name`` placeholders (see ``TableSchema.placeholders``)
        and values with ``:name``; ``values`` are plain Python values.
        """
        request: dict[str, Any] = {
            "TableName": self.name,
            "Key": encode_item(key),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": encode_item(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if names := self.schema.placeholders(update, condition):
            request["ExpressionAttributeNames"] = names
        try:
            self.client.update_item(**request)
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            return decode_item(exc.response.get("Item", {}))
        return None


def illegal(what: str, current: dict[str, Any], wanted: str) -> IllegalTransitionError:
    """The error for a refused transition, naming the state the item was found in."""
    state = current.get("state")
    return IllegalTransitionError(what, None if state is None else str(state), wanted)
