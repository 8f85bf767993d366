"""Proposing declared types from JSON values: kinds, merging, nullability, conflicts and their resolution."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ndjson_pipeline.schema_inference import (
    MAP_KEYS,
    Observed,
    field_paths,
    kind_of,
    proposed_fields,
    proposed_type,
    type_string,
)
from tools.sample_data import make_event

EVENTS_SCHEMA = Path(__file__).resolve().parents[2] / "glue_scripts" / "schemas" / "events.json"


def _observed(*values: object) -> Observed:
    observed = Observed()
    for value in values:
        observed.add(value)
    return observed


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("2026-11-24T10:15:00Z", "timestamp"),
        ("2026-11-24T10:15:00.123+02:00", "timestamp"),
        ("2026-11-24 10:15:00", "timestamp"),  # no offset: UTC
        ("2026-11-24T10:15", "timestamp"),
        ("2026-11-24", "date"),
        ("2026-13-01", "string"),  # the shape of a date, not a date
        ("2026-11-24T25:00:00Z", "string"),
        ("24/11/2026", "string"),
        ("1732443300", "string"),  # epoch seconds as text: a field says so in its metadata, review it
        (7, "long"),
        (2**63, "double"),  # beyond a long
        (7.5, "double"),
        (True, "boolean"),
        (None, "null"),
        ({}, "struct"),
        ([], "array"),
    ],
)
def test_kinds(value, kind):
    assert kind_of(value) == kind


def test_nested_structs_and_arrays_are_proposed_with_their_members_in_first_seen_order():
    spark_type, conflicts = proposed_type(
        _observed(
            {"id": "a", "user": {"name": "x", "age": 3}, "items": [{"sku": "s", "qty": 1}]},
            {"id": "b", "user": {"name": "y", "age": 4, "plan": "pro"}, "items": []},
        )
    )
    assert conflicts == []
    assert type_string(spark_type) == (
        "struct<id:string,user:struct<name:string,age:long,plan:string>,items:array<struct<sku:string,qty:long>>>"
    )


def test_a_member_missing_or_null_in_some_objects_is_nullable():
    fields, _ = proposed_fields(_observed({"a": 1, "b": 1, "c": 1}, {"a": 2, "b": None}))
    assert {f["name"]: f["nullable"] for f in fields} == {"a": False, "b": True, "c": True}
    (items,) = proposed_fields(_observed({"x": [1, None]}))[0]
    assert items["type"] == {"type": "array", "elementType": "long", "containsNull": True}


def test_integers_with_decimals_are_doubles_without_a_conflict():
    assert proposed_type(_observed(1, 2.5, None)) == ("double", [])
    assert proposed_type(_observed(1, 2)) == ("long", [])


def test_timestamps_or_dates_mixed_with_other_strings_are_strings_and_reported():
    spark_type, (conflict,) = proposed_type(_observed("2026-11-24T10:00:00Z", "yesterday", "2026-11-24"), "t")
    assert spark_type == "string"
    assert (conflict.path, conflict.resolution) == ("t", "string")
    assert conflict.counts == {"date": 1, "string": 1, "timestamp": 1}


def test_kinds_no_type_reads_together_take_the_kind_of_most_values_and_say_what_the_rest_become():
    spark_type, (conflict,) = proposed_type(_observed("a", "b", 3, {"x": 1}), "f")
    assert spark_type == "string"
    assert conflict.counts == {"long": 1, "string": 2, "struct": 1}
    assert conflict.note.startswith("2 value(s) of other kinds would go to _rescued_data")


def test_an_object_with_more_keys_than_a_struct_should_have_is_a_map():
    values = [{f"user-{n}": n} for n in range(MAP_KEYS + 1)]
    spark_type, (conflict,) = proposed_type(_observed(*values), "scores")
    assert spark_type == {"type": "map", "keyType": "string", "valueType": "long", "valueContainsNull": True}
    assert conflict.resolution == "map"


def test_places_with_nothing_to_type_are_guessed_and_reported():
    fields, conflicts = proposed_fields(_observed({"a": None, "b": []}))
    assert [type_string(f["type"]) for f in fields] == ["string", "array<string>"]
    assert [c.path for c in conflicts] == ["a", "b[]"]


def test_observations_merge_as_if_observed_together_and_survive_json():
    rng = random.Random(3)
    events = [make_event(rng, f"e{n}") for n in range(60)]
    together = _observed(*events)
    merged = _observed(*events[:25]).merge(_observed(*events[25:]))
    assert merged == together
    assert Observed.from_json(json.loads(json.dumps(merged.to_json()))) == together


def test_the_sample_events_give_back_the_declared_schema_with_a_typed_event_time():
    rng = random.Random(5)
    fields, conflicts = proposed_fields(_observed(*(make_event(rng, f"e{n}") for n in range(200))))
    declared = json.loads(EVENTS_SCHEMA.read_text())["fields"]
    # Money is a decimal only by decision: a sample shows numbers with a fraction, proposed as double.
    expected = {f["name"]: type_string(f["type"]) for f in declared} | {"amount": "double"}
    assert {f["name"]: type_string(f["type"]) for f in fields} == expected
    # The sample's referrer is always null: its type is a guess, and said to be one.
    assert [c.path for c in conflicts] == ["context.page.referrer"]
    assert list(field_paths(fields)) == list(field_paths(declared))
