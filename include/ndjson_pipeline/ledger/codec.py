"""Plain Python values to DynamoDB's typed JSON and back, with boto3's own (de)serialiser.

The ledger stores strings, integers and string sets. Numbers come back as
``int`` (boto3 gives ``Decimal``); an attribute whose value is None is left out
of an item rather than stored as NULL, so absent and unset are one thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()

TypedItem = dict[str, Any]


def encode(value: Any) -> dict[str, Any]:
    """One value in DynamoDB's typed form (``{"S": ...}``, ``{"N": ...}``, ``{"SS": [...]}``)."""
    if isinstance(value, Enum):
        value = value.value
    elif isinstance(value, set | frozenset):
        value = {v.value if isinstance(v, Enum) else v for v in value}
    return dict(_SERIALIZER.serialize(value))


def encode_item(values: Mapping[str, Any]) -> TypedItem:
    """An item or key from plain values; None-valued attributes are left out."""
    return {name: encode(value) for name, value in values.items() if value is not None}


def decode_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item from DynamoDB's typed form; numbers as ``int`` when whole."""
    return {name: _plain(_DESERIALIZER.deserialize(typed)) for name, typed in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
