"""Finding work through the sparse index: what a scan needs is a ``WorkIndex`` value, no client, no Ledger.

``PendingSummaryScan`` and ``OpenDaysScan`` are split into ``next_request``/
``add_page`` so the same logic drives the sync ledger and the triggerer's async
client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ndjson_pipeline.ledger.codec import decode_item, encode
from ndjson_pipeline.ledger.schema import (
    OPEN_DAYS_PARTITION,
    TableSchema,
    day_of_open_day,
    instant_of,
    pending_partition,
    table_schema,
)


@dataclass(frozen=True)
class WorkIndex:
    """Where the ledger's open work is found: the sparse index (name, keys, pending shards), the open-days
    registry and the days' wakes (``wakes``) in the table.

    JSON-serialisable (``as_dict``), so a trigger can carry it.
    """

    table: str
    name: str
    partition_key: str
    sort_key: str
    shards: int
    table_partition_key: str
    table_sort_key: str
    ttl_attribute: str

    @classmethod
    def of(cls, table: str, schema: TableSchema | None = None) -> WorkIndex:
        schema = schema or table_schema()
        return cls(
            table,
            schema.index_name,
            schema.index_partition_key,
            schema.index_sort_key,
            schema.pending_shards,
            schema.partition_key,
            schema.sort_key,
            schema.ttl_attribute,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WorkIndex:
        return cls(**raw)

    def open_days_query(self, day: str | None = None) -> dict[str, Any]:
        """A consistent Query of the open-days registry: every open day's items, or only ``day``'s."""
        names = {"#pk": self.table_partition_key}
        values = {":p": encode(OPEN_DAYS_PARTITION)}
        condition = "#pk = :p"
        if day is not None:
            names["#sk"] = self.table_sort_key
            values[":day"] = encode(f"{day}#")
            condition += " AND begins_with(#sk, :day)"
        return {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }

    def open_day_of(self, item: dict[str, Any]) -> dict[str, Any]:
        """A decoded registry item with the day it stands for, as ``day``."""
        return {**item, "day": day_of_open_day(str(item[self.table_sort_key]))}

    def query(
        self,
        partition: str,
        *,
        page_size: int,
        upper_sort_key: str | None = None,
        attributes: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A Query request for one index partition, sort keys up to ``upper_sort_key``, ``attributes`` only."""
        names = {"#wpk": self.partition_key}
        values = {":p": encode(partition)}
        condition = "#wpk = :p"
        if upper_sort_key is not None:
            names["#wsk"] = self.sort_key
            values[":upper"] = encode(upper_sort_key)
            condition += " AND #wsk <= :upper"
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.name,
            "KeyConditionExpression": condition,
            "Limit": page_size,
        }
        if attributes:
            projected = {f"#a{n}": name for n, name in enumerate(attributes)}
            names.update(projected)
            request["ProjectionExpression"] = ", ".join(projected)
        request["ExpressionAttributeNames"] = names
        request["ExpressionAttributeValues"] = values
        return request


@dataclass(frozen=True)
class PendingSummary:
    day: str
    files: int
    bytes: int
    oldest_registered_at: str | None
    exhaustive: bool

    def oldest_age_seconds(self, now: datetime) -> float:
        if self.oldest_registered_at is None:
            return 0.0
        return max(0.0, (now - datetime.fromisoformat(self.oldest_registered_at)).total_seconds())


class PendingSummaryScan:
    """Counts a day's pending work (its pending groups' files and bytes) page by page and stops as soon as either
    threshold is met.

    Each shard is read oldest first, so the first item of each shard gives the
    oldest pending arrival.

    :param index: the ledger's work index.
    :param day: the day (YYYY-MM-DD) to count.
    :param enough_files: stop once this many pending files were counted.
    :param enough_bytes: stop once this many pending bytes were counted.
    :param page_size: index items per request.
    """

    def __init__(self, index: WorkIndex, day: str, *, enough_files: int, enough_bytes: int, page_size: int = 500):
        self.index = index
        self.day = day
        self.enough_files = enough_files
        self.enough_bytes = enough_bytes
        self.page_size = page_size
        self.files = 0
        self.bytes = 0
        self.oldest: str | None = None
        self._shard = 0
        self._start_key: dict[str, Any] | None = None

    def enough(self) -> bool:
        return self.files >= self.enough_files or self.bytes >= self.enough_bytes

    def next_request(self) -> dict[str, Any] | None:
        if self._shard >= self.index.shards or self.enough():
            return None
        request = self.index.query(
            pending_partition(self.day, self._shard),
            page_size=self.page_size,
            attributes=("file_count", "total_bytes", self.index.sort_key),
        )
        if self._start_key:
            request["ExclusiveStartKey"] = self._start_key
        return request

    def add_page(self, page: dict[str, Any]) -> None:
        items = [decode_item(raw) for raw in page.get("Items", [])]
        if items and self._start_key is None:
            registered_at = instant_of(str(items[0][self.index.sort_key]))
            self.oldest = registered_at if self.oldest is None else min(self.oldest, registered_at)
        for item in items:
            self.files += int(item["file_count"])
            self.bytes += int(item["total_bytes"])
        self._start_key = page.get("LastEvaluatedKey")
        if not self._start_key:
            self._shard += 1

    def result(self) -> PendingSummary:
        return PendingSummary(
            day=self.day,
            files=self.files,
            bytes=self.bytes,
            oldest_registered_at=self.oldest,
            exhaustive=self._shard >= self.index.shards,
        )


class OpenDaysScan:
    """Reads the open-days registry (every day with open work, or only ``day``'s items), page by page.

    :param index: the ledger's work index.
    :param day: only this day's registry items (YYYY-MM-DD), or every open day's.
    """

    def __init__(self, index: WorkIndex, day: str | None = None) -> None:
        self.index = index
        self.items: list[dict[str, Any]] = []
        self._request: dict[str, Any] | None = index.open_days_query(day)

    def next_request(self) -> dict[str, Any] | None:
        return self._request

    def add_page(self, page: dict[str, Any]) -> None:
        self.items += [self.index.open_day_of(decode_item(raw)) for raw in page.get("Items", [])]
        if self._request is not None and page.get("LastEvaluatedKey"):
            self._request = {**self._request, "ExclusiveStartKey": page["LastEvaluatedKey"]}
        else:
            self._request = None

    def days(self) -> list[str]:
        """The open days read, newest first."""
        return sorted({str(item["day"]) for item in self.items}, reverse=True)
