"""DynamoDB's capacity units from item sizes, by its published rules, for endpoints that report none.

Rules (DynamoDB developer guide, "Read/write capacity mode" and "Item sizes"):

- an item's size is the sum of its attribute names and values (strings in UTF-8,
  numbers about 1 byte per two significant digits + 1, sets the sum of their
  members, lists and maps 3 bytes + 1 per element);
- a write costs 1 unit per started KB of the larger of the item before and
  after it (a refused conditional write: of the item as it is); in a
  transaction 2 units per KB, cancelled ones included;
- each global secondary index the write touches costs standard units per KB
  of the projected item: a put when the item enters the index, a delete when it
  leaves, both when its index key changes, one when a projected attribute does;
- a strongly consistent read costs 1 unit per started 4 KB of each item (a
  missing one too), an eventually consistent read half, a transactional read
  double; a Query costs by the total size of the items it read, before any
  projection, with at least one unit.

``ItemMeter`` reads the items a request touches, before and after it, through
the same client with counting paused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
KB = 1024
READ_UNIT_BYTES = 4 * KB
_NAME = re.compile(r"#\w+")
_PROJECTION = ("ProjectionExpression", "ExpressionAttributeNames")


def reported_units(parsed: dict[str, Any]) -> float:
    """The units a response reports (``ConsumedCapacity``, one entry or one per table)."""
    consumed = parsed.get("ConsumedCapacity") or []
    entries = consumed if isinstance(consumed, list) else [consumed]
    return float(sum(entry.get("CapacityUnits", 0) for entry in entries))


# ---------------------------------------------------------------------- sizes


def value_size(typed: dict[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB's typed form."""
    ((kind, value),) = typed.items()
    if kind == "S":
        return len(value.encode())
    if kind == "N":
        return _number_size(value)
    if kind == "B":
        return len(value)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in value)
    if kind == "NS":
        return sum(_number_size(v) for v in value)
    if kind == "BS":
        return sum(len(v) for v in value)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in value)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in value.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def _number_size(text: str) -> int:
    digits = str(text).lstrip("-").replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(before: int, after: int, *, transactional: bool = False) -> float:
    units = max(1, math.ceil(max(before, after) / KB))
    return float(2 * units if transactional else units)


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    factor = 2.0 if transactional else (1.0 if consistent else 0.5)
    return units * factor


# ---------------------------------------------------------------------- the table's shape


class TableShape:
    """Key attributes of a table and, per global secondary index, its key attributes and projection."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.keys = tuple(k["AttributeName"] for k in description["KeySchema"])
        self.indexes: dict[str, tuple[tuple[str, ...], str, frozenset[str]]] = {}
        for index in description.get("GlobalSecondaryIndexes", []):
            projection = index.get("Projection", {})
            self.indexes[index["IndexName"]] = (
                tuple(k["AttributeName"] for k in index["KeySchema"]),
                projection.get("ProjectionType", "ALL"),
                frozenset(projection.get("NonKeyAttributes", [])),
            )

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.keys}

    def projected(self, item: dict[str, Any] | None, index: str) -> dict[str, Any] | None:
        """The item as the index holds it, or None when the item is not in the (sparse) index."""
        keys, kind, included = self.indexes[index]
        if not item or any(k not in item for k in keys):
            return None
        if kind == "ALL":
            return item
        wanted = set(self.keys) | set(keys) | (included if kind == "INCLUDE" else set())
        return {name: value for name, value in item.items() if name in wanted}

    def index_write_units(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> float:
        units = 0.0
        for index, (keys, _, _) in self.indexes.items():
            old, new = self.projected(before, index), self.projected(after, index)
            if old == new:
                continue
            if old is None or new is None:
                units += write_units(item_size(old), item_size(new))
            elif any(old[k] != new[k] for k in keys):
                units += write_units(item_size(old), 0) + write_units(0, item_size(new))
            else:
                units += write_units(item_size(old), item_size(new))
        return units


# ---------------------------------------------------------------------- metering one request


class ItemMeter:
    """Units of one client's DynamoDB requests from the items they read or change.

    :param client: the DynamoDB client whose requests are metered.
    :param quietly: runs a request of the meter's own without counting or metering it.
    :param synchronous: whether the client is a sync one (an async client's items cannot be read here).
    """

    def __init__(self, client: Any, quietly: Callable[..., Any], *, synchronous: bool) -> None:
        self.client = client
        self.quietly = quietly
        self.synchronous = synchronous
        self._shapes: dict[str, TableShape] = {}

    def shape(self, table: str) -> TableShape:
        if table not in self._shapes:
            self._shapes[table] = TableShape(self.quietly(self.client.describe_table, TableName=table)["Table"])
        return self._shapes[table]

    def before(self, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """What the request will touch and, for a write, those items as they are now."""
        if operation not in WRITES:
            return {"params": params}
        keys = list(self._written_keys(operation, params))
        return {"params": params, "keys": keys, "before": self._items(keys)}

    def after(self, operation: str, state: dict[str, Any] | None, parsed: dict[str, Any]) -> float:
        if state is None:
            return 0.0
        params = state["params"]
        if operation in WRITES:
            after = self._items(state["keys"])
            transactional = operation == "TransactWriteItems"
            units = 0.0
            for (table, _, _), old, new in zip(state["keys"], state["before"], after, strict=True):
                units += write_units(item_size(old), item_size(new), transactional=transactional)
                units += self.shape(table).index_write_units(old, new)
            return units
        return self._read_units(operation, params, parsed)

    # ------------------------------------------------------------------ writes

    def _written_keys(self, operation: str, params: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any], str]]:
        if operation == "PutItem":
            yield params["TableName"], self.shape(params["TableName"]).key_of(params["Item"]), "put"
        elif operation in ("UpdateItem", "DeleteItem"):
            yield params["TableName"], params["Key"], operation
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        yield table, self.shape(table).key_of(request["PutRequest"]["Item"]), "put"
                    else:
                        yield table, request["DeleteRequest"]["Key"], "delete"
        else:
            for action in params["TransactItems"]:
                ((kind, body),) = action.items()
                key = self.shape(body["TableName"]).key_of(body["Item"]) if kind == "Put" else body["Key"]
                yield body["TableName"], key, kind

    def _items(self, keys: list[tuple[str, dict[str, Any], str]]) -> list[dict[str, Any] | None]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        by_table: dict[str, list[dict[str, Any]]] = {}
        for table, key, _ in keys:
            by_table.setdefault(table, []).append(key)
        for table, table_keys in by_table.items():
            for start in range(0, len(table_keys), 100):
                request = {table: {"Keys": table_keys[start : start + 100], "ConsistentRead": True}}
                while request:
                    response = self.quietly(self.client.batch_get_item, RequestItems=request)
                    for item in response["Responses"].get(table, []):
                        found[(table, _key_text(self.shape(table).key_of(item)))] = item
                    request = response.get("UnprocessedKeys") or {}
        return [found.get((table, _key_text(key))) for table, key, _ in keys]

    # ------------------------------------------------------------------ reads

    def _read_units(self, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> float:
        if operation == "GetItem":
            item = self._full(params, parsed.get("Item"))
            return read_units(item_size(item), consistent=bool(params.get("ConsistentRead")))
        if operation == "TransactGetItems":
            return sum(
                read_units(item_size(r.get("Item")), consistent=True, transactional=True)
                for r in parsed.get("Responses", [])
            )
        if operation == "BatchGetItem":
            units = 0.0
            for table, spec in params["RequestItems"].items():
                items = parsed.get("Responses", {}).get(table, [])
                if "ProjectionExpression" in spec:
                    full = {k: v for k, v in spec.items() if k not in _PROJECTION}
                    items = self.quietly(self.client.batch_get_item, RequestItems={table: full})["Responses"][table]
                sizes = [item_size(item) for item in items]
                missing = len(spec["Keys"]) - len(items)
                consistent = bool(spec.get("ConsistentRead"))
                units += sum(read_units(size, consistent=consistent) for size in sizes)
                units += missing * read_units(0, consistent=consistent)
            return units
        # Query and Scan: the items read are the page's, before projection; a GSI read is eventually consistent.
        request = _without_projection(params)
        items = self.quietly(getattr(self.client, "query" if operation == "Query" else "scan"), **request)["Items"]
        consistent = bool(params.get("ConsistentRead")) and "IndexName" not in params
        return read_units(sum(item_size(item) for item in items), consistent=consistent)

    def _full(self, params: dict[str, Any], item: dict[str, Any] | None) -> dict[str, Any] | None:
        if item is None or "ProjectionExpression" not in params:
            return item
        response = self.quietly(
            self.client.get_item, TableName=params["TableName"], Key=params["Key"], ConsistentRead=True
        )
        full: dict[str, Any] | None = response.get("Item")
        return full


def _without_projection(params: dict[str, Any]) -> dict[str, Any]:
    request = {k: v for k, v in params.items() if k not in ("ProjectionExpression", "ReturnConsumedCapacity")}
    if "ProjectionExpression" in params and "ExpressionAttributeNames" in request:
        expressions = " ".join(str(request.get(k, "")) for k in ("KeyConditionExpression", "FilterExpression"))
        used = set(_NAME.findall(expressions))
        names = {n: v for n, v in request["ExpressionAttributeNames"].items() if n in used}
        if names:
            request["ExpressionAttributeNames"] = names
        else:
            del request["ExpressionAttributeNames"]
    return request


def _key_text(key: dict[str, Any]) -> str:
    return repr(sorted((name, sorted(value.items())) for name, value in key.items()))
