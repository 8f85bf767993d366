"""The item codec: boto3's (de)serialiser with the ledger's conventions (ints, sets, absent instead of NULL)."""

from __future__ import annotations

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger.codec import decode_item, encode, encode_item


def test_round_trip_keeps_strings_ints_and_string_sets():
    item = {"pk": "F#b/k", "size": 3_500_000, "attempts": 0, "files": {"b/a#1", "b/c#2"}}

    typed = encode_item(item)

    assert typed["size"] == {"N": "3500000"}
    assert sorted(typed["files"]["SS"]) == ["b/a#1", "b/c#2"]
    decoded = decode_item(typed)
    assert decoded == item
    assert isinstance(decoded["size"], int)


def test_none_is_left_out_and_enums_are_stored_by_value():
    typed = encode_item({"state": FileState.PENDING, "version_id": None})

    assert typed == {"state": {"S": "PENDING"}}
    assert type(typed["state"]["S"]) is str
    assert encode({FileState.DONE}) == {"SS": ["DONE"]}
