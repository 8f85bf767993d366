"""The ledger table's shape and every key format, in one place.

The key and TTL attribute names, the index and its shards come from the
``ledger`` section of ``resources.json``, which Terraform and the local
bootstrap read too. Item layout::

    file version   <pk> = F#<bucket>/<key>   <sk> = V#<etag>
    group          <pk> = G#<group_id>       <sk> = GROUP       (versions registered together; ``groups``)
    manifest       <pk> = M#<manifest_id>    <sk> = MANIFEST
    open day       <pk> = OPEN_DAYS          <sk> = <day>#<shard>   (a day with open work; ``days``)
    day's wake     <pk> = WAKE#<day>         <sk> = WAKE        (the ingest run its ready batch woke; ``wakes``)

Only work carries the index keys (a sparse index)::

    pending group  <index pk> = <day>#P#<shard>   <index sk> = <registered at>#<group_id>
    open manifest  <index pk> = <day>#M           <index sk> = <lease expires at>#<manifest_id>
    alert pending  <index pk> = <day>#A           <index sk> = <failed at>#<group_id>

Pending groups spread over ``pending_shards`` partitions per day, so no day has
one hot key; index sort keys start with an instant, so a shard reads oldest
first and a query bounded by an instant finds expired leases. The open days share
one table partition (read with a consistent Query; days with work are few),
each day split over ``pending_shards`` items so concurrent writers of one day
rarely touch the same item.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from ndjson_pipeline.files import FileId
from ndjson_pipeline.resources import ledger_spec

MANIFEST_SORT_KEY = "MANIFEST"
GROUP_SORT_KEY = "GROUP"
OPEN_DAYS_PARTITION = "OPEN_DAYS"
WAKE_SORT_KEY = "WAKE"
_PLACEHOLDER = re.compile(r"#\w+")
# Attribute names that are DynamoDB reserved words, by the placeholder expressions use for them.
_RESERVED = {"#state": "state", "#size": "size", "#bucket": "bucket", "#key": "key"}


@dataclass(frozen=True)
class TableSchema:
    """Attribute names of the ledger table and its work index, as declared in ``resources.json``.

    :param partition_key: the table's hash key attribute.
    :param sort_key: the table's range key attribute.
    :param ttl_attribute: the attribute DynamoDB's TTL reads (epoch seconds).
    :param index_name: the sparse index of open work.
    :param index_partition_key: the index's hash key attribute.
    :param index_sort_key: the index's range key attribute.
    :param pending_shards: index partitions one day's pending files spread over.
    """

    partition_key: str
    sort_key: str
    ttl_attribute: str
    index_name: str
    index_partition_key: str
    index_sort_key: str
    pending_shards: int

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TableSchema:
        index = spec["work_index"]
        return cls(
            partition_key=str(spec["partition_key"]),
            sort_key=str(spec["sort_key"]),
            ttl_attribute=str(spec["ttl_attribute"]),
            index_name=str(index["name"]),
            index_partition_key=str(index["partition_key"]),
            index_sort_key=str(index["sort_key"]),
            pending_shards=int(spec["pending_shards"]),
        )

    # ------------------------------------------------------------------ table keys

    def file_key(self, file_id: FileId) -> dict[str, str]:
        return {self.partition_key: _file_partition(file_id.bucket, file_id.key), self.sort_key: f"V#{file_id.etag}"}

    def group_key(self, group_id: str) -> dict[str, str]:
        return {self.partition_key: f"G#{group_id}", self.sort_key: GROUP_SORT_KEY}

    def manifest_key(self, manifest_id: str) -> dict[str, str]:
        return {self.partition_key: f"M#{manifest_id}", self.sort_key: MANIFEST_SORT_KEY}

    def open_day_key(self, day: str, shard: int) -> dict[str, str]:
        return {self.partition_key: OPEN_DAYS_PARTITION, self.sort_key: f"{day}#{shard:02d}"}

    # ------------------------------------------------------------------ index keys

    def shard_of(self, identity: str) -> int:
        return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=4).digest()) % self.pending_shards

    def pending_slot(self, day: str, group_id: str, registered_at: str) -> dict[str, str]:
        """The index keys that make a group findable as pending work."""
        return {
            self.index_partition_key: pending_partition(day, self.shard_of(group_id)),
            self.index_sort_key: work_sort_key(registered_at, group_id),
        }

    def alert_slot(self, day: str, group_id: str, failed_at: str) -> dict[str, str]:
        """The index keys of a FAILED group whose alert is still to be published."""
        return {
            self.index_partition_key: alerts_partition(day),
            self.index_sort_key: work_sort_key(failed_at, group_id),
        }

    def open_manifest_slot(self, day: str, manifest_id: str, lease_expires_at: str) -> dict[str, str]:
        """The index keys of an open manifest, ordered by the end of its lease."""
        return {
            self.index_partition_key: open_manifests_partition(day),
            self.index_sort_key: work_sort_key(lease_expires_at, manifest_id),
        }

    # ------------------------------------------------------------------ expressions

    def placeholders(self, *expressions: str) -> dict[str, str]:
        """``ExpressionAttributeNames`` for the ``#name`` placeholders the expressions use.

        ``#pk``, ``#sk``, ``#ttl``, ``#wpk`` and ``#wsk`` stand for the schema's
        attribute names, the others for reserved words. DynamoDB rejects a name
        no expression uses, so only the used ones are returned.
        """
        known = {
            "#pk": self.partition_key,
            "#sk": self.sort_key,
            "#ttl": self.ttl_attribute,
            "#wpk": self.index_partition_key,
            "#wsk": self.index_sort_key,
            **_RESERVED,
        }
        return {name: known[name] for name in sorted(set(_PLACEHOLDER.findall(" ".join(expressions))))}


@cache
def table_schema() -> TableSchema:
    """The schema ``resources.json`` declares (read once)."""
    return TableSchema.from_spec(ledger_spec())


def _file_partition(bucket: str, key: str) -> str:
    return f"F#{bucket}/{key}"


def wake_partition(day: str) -> str:
    return f"WAKE#{day}"


def pending_partition(day: str, shard: int) -> str:
    return f"{day}#P#{shard:02d}"


def open_manifests_partition(day: str) -> str:
    return f"{day}#M"


def alerts_partition(day: str) -> str:
    return f"{day}#A"


def day_of_open_day(sort_key: str) -> str:
    """The day an open-day item's sort key (``<day>#<shard>``) names."""
    return sort_key.split("#", 1)[0]


def work_sort_key(instant: str, name: str) -> str:
    """Index sort keys start with a stored instant (``clock.iso``), so they sort in time order."""
    return f"{instant}#{name}"


def instant_of(sort_key: str) -> str:
    """The instant an index sort key starts with."""
    return sort_key.split("#", 1)[0]


def up_to(instant: str) -> str:
    """The greatest index sort key of ``instant``: a bound that includes every name at that instant."""
    return f"{instant}#~"
