"""A group's drift: the field paths its written rows hold in ``_rescued_data``, counted for the job's result.

``_rescued_data`` holds, per row, a JSON object of the top-level fields that did
not fit (``ndjson_job.lines``): each value as JSON text, a string value as it
is. Each is walked against the declared schema down to the paths that did not
fit: a key the schema does not declare (``user.plan``, a new field) or a value
the declared type refuses (``user.age`` given as text), as ``conform`` decides.
The count reads the group's Parquet files once they are written, so it covers
exactly the rows the group publishes (a file dropped and converted again is
counted once); only the rescued column is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ndjson_job.lines import DUPLICATE_KEYS, conform, time_format_of
from ndjson_pipeline.dataset_schema import RESCUED_COLUMN
from ndjson_pipeline.drift import Drift


def group_drift(folder: Path, schema: pa.Schema) -> Drift:
    """The drift of the Parquet files in ``folder`` (one group's output), against the declared ``schema``."""
    drift = Drift()
    for path in sorted(folder.glob("*.parquet")):
        parquet = pq.ParquetFile(path)
        if RESCUED_COLUMN not in parquet.schema_arrow.names:
            continue  # strict mode: nothing is rescued
        for batch in parquet.iter_batches(columns=[RESCUED_COLUMN]):
            for text in pc.drop_null(batch.column(0)).to_pylist():
                drift.count_row(rescued_paths(json.loads(text), schema))
    return drift


def rescued_paths(rescued: dict[str, str], schema: pa.Schema) -> dict[str, tuple[bool, list[object]]]:
    """The paths one row's rescued fields hold: whether the schema declares each, and the values found there."""
    found: dict[str, tuple[bool, list[object]]] = {}
    for name, text in rescued.items():
        if name == DUPLICATE_KEYS:
            continue  # earlier values of a repeated key: not a field
        index = schema.get_field_index(name)
        declared = None if index < 0 else schema.field(index).type
        time_format = None if index < 0 else time_format_of(schema.field(index))
        value = _rescued_value(text, declared, time_format)
        paths = [(name, None, value)] if declared is None else _unfit(value, declared, name, time_format)
        for path, path_type, item in paths:
            found.setdefault(path, (path_type is not None, []))[1].append(item)
    return found


def _rescued_value(text: str, declared: pa.DataType | None, time_format: str | None) -> object:
    """A rescued value as it was in the line. A string is kept as it is, so text that reads as JSON may be one."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, str) or (declared is not None and conform(value, declared, time_format)[1]):
        return text  # a value that would have fit its declared type can only have been this text
    return value


def _unfit(
    value: object, declared: pa.DataType, path: str, time_format: str | None
) -> Iterator[tuple[str, pa.DataType | None, object]]:
    """The places inside ``value`` that ``declared`` does not read: unknown keys and values of another type."""
    if pa.types.is_struct(declared) and isinstance(value, dict):
        for key, item in value.items():
            index = declared.get_field_index(key)
            if index < 0:
                yield f"{path}.{key}", None, item
            else:
                member = declared.field(index)
                yield from _unfit(item, member.type, f"{path}.{key}", time_format_of(member))
    elif pa.types.is_list(declared) and isinstance(value, list):
        for item in value:
            yield from _unfit(item, declared.value_type, f"{path}[]", time_format)
    elif pa.types.is_map(declared) and isinstance(value, dict):
        for item in value.values():  # any key fits a map: only its values can be off
            yield from _unfit(item, declared.item_type, f"{path}{{}}", time_format)
    elif not conform(value, declared, time_format)[1]:
        yield path, declared, value
