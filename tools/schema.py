"""Onboard a dataset: propose its declared schema from sample NDJSON files; check a schema file and its history.

``python -m tools.schema propose SAMPLE... --dataset NAME``
    reads the samples (local files or folders, ``s3://bucket/key`` objects or ``s3://bucket/prefix/`` listings,
    plain or gzip), proposes a declared schema (``ndjson_pipeline.schema_inference``) and writes it to
    ``glue_scripts/schemas/NAME.json`` for review, with a report of the fields and of every conflict it
    resolved. It never replaces a schema file: a dataset's current version is in use (evolve it as
    docs/schema-evolution.md says), and an earlier proposal is removed by hand before proposing again.
``python -m tools.schema check glue_scripts/schemas/NAME.json``
    the file reads as the job reads it (its types, reserved columns and, with ``--conversion``, the event-time
    field), its names fit the catalog, and every version in its history evolves compatibly from the one before.

Exit status 0 when done, 1 with a message naming the file and the problem.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ndjson_job.schema import RESERVED_COLUMNS, JobArgumentError, parse_schema
from ndjson_pipeline.conversion import ConversionOptions, JobArguments, OptionError
from ndjson_pipeline.dataset_schema import DeclaredSchema, SchemaError, SchemaRegistry, field_name_problems
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.schema_inference import Conflict, Observed, proposed_fields, type_string
from ndjson_pipeline.settings import PipelineSettings, SettingsError
from ndjson_pipeline.storage import Storage, split_s3_uri

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "glue_scripts" / "schemas"
_CHUNK = 8 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class OnboardingError(RuntimeError):
    """A sample cannot be read, or a proposal cannot be written; the message names the file and what to do."""


@dataclass
class Sample:
    """What the sample lines held: their objects observed together, and the lines that were not objects."""

    uris: list[str] = field(default_factory=list)
    lines: int = 0
    malformed: int = 0
    not_objects: int = 0
    objects: Observed = field(default_factory=Observed)


@dataclass(frozen=True)
class Proposal:
    dataset: str
    document: dict[str, Any]  # the schema file: Spark StructType JSON with "version": 1
    conflicts: list[Conflict]
    left_out: dict[str, str]  # top-level keys the schema cannot declare, and why
    problems: list[str]  # what the file still needs before ``check`` accepts it


def sample_uris(sources: Iterable[str], storage: Storage) -> list[str]:
    """The files the sources name: a local folder's files, an ``s3://`` prefix's objects (ending in ``/``)."""
    uris: list[str] = []
    for source in sources:
        if source.startswith("s3://"):
            found = sorted(storage.list(source)) if source.endswith("/") else [source]
        elif Path(source).is_dir():
            found = sorted(str(p) for p in Path(source).rglob("*") if p.is_file())
        elif Path(source).is_file():
            found = [source]
        else:
            raise OnboardingError(f"{source}: no such file or folder")
        if not found:
            raise OnboardingError(f"{source}: no object under this prefix")
        uris += found
    return uris


def _chunks(uri: str, storage: Storage) -> Iterator[bytes]:
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        try:
            body = storage.s3.get_object(Bucket=bucket, Key=key)["Body"]
        except storage.s3.exceptions.ClientError as exc:
            raise OnboardingError(f"{uri}: {exc}") from exc
        yield from body.iter_chunks(_CHUNK)
        return
    with open(uri, "rb") as local:
        yield from iter(lambda: local.read(_CHUNK), b"")


def _gunzipped(chunks: Iterator[bytes], uri: str) -> Iterator[bytes]:
    """The decoded bytes of a gzip stream, members one after another (``cat a.gz b.gz`` is one gzip file)."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            while chunk:
                yield decoder.decompress(chunk)
                chunk = decoder.unused_data
                if decoder.eof:
                    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise OnboardingError(f"{uri}: not a readable gzip file ({exc})") from exc


def read_lines(uri: str, storage: Storage) -> Iterator[bytes]:
    """The lines of one sample file, gunzipped when it starts like gzip, streamed."""
    chunks = _chunks(uri, storage)
    first = next(chunks, b"")
    chunks = itertools.chain([first], chunks)
    data = _gunzipped(chunks, uri) if first.startswith(_GZIP_MAGIC) else chunks
    rest = b""
    for block in data:
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def observe_samples(uris: list[str], storage: Storage, lines_per_file: int) -> Sample:
    """Every object line of the samples, observed; at most ``lines_per_file`` non-blank lines of each file."""
    sample = Sample(uris=uris)
    for uri in uris:
        taken = 0
        for line in read_lines(uri, storage):
            if not line.strip():
                continue
            if taken == lines_per_file:
                break
            taken += 1
            sample.lines += 1
            try:
                value = json.loads(line)
            except ValueError:  # malformed JSON and invalid UTF-8 alike
                sample.malformed += 1
                continue
            if not isinstance(value, dict):
                sample.not_objects += 1
                continue
            sample.objects.add(value)
    return sample


def propose(sample: Sample, dataset: str) -> Proposal:
    """The declared schema the sample's objects suggest (version 1), with what needs a reviewer's eye."""
    if not sample.objects.kinds["struct"]:
        raise OnboardingError(f"no JSON object in {len(sample.uris)} sample file(s): nothing to propose from")
    objects = Observed(kinds=sample.objects.kinds, elements=sample.objects.elements)
    left_out = {}
    for key, member in sample.objects.fields.items():
        if key in RESERVED_COLUMNS:
            left_out[key] = "a column the pipeline adds to every row (or the partition column): rename it at the source"
        else:
            objects.fields[key] = member
    fields, conflicts = proposed_fields(objects)
    if sample.objects.other_fields is not None:
        left_out["..."] = "more distinct top-level keys than can be tracked: they are data, not fields"
    document = {"type": "struct", "version": 1, "fields": fields}
    return Proposal(dataset, document, conflicts, left_out, field_name_problems(fields))


def write_proposal(proposal: Proposal, path: Path) -> None:
    """Write the proposal to ``path``; refuse when a schema file is there or the dataset has versions in use."""
    history = SchemaRegistry(path.parent, proposal.dataset).history_folder
    if path.exists():
        raise OnboardingError(
            f"{path} exists and is not replaced. If it is a proposal not yet in use, remove it and propose again; "
            "if it is in use, evolve it instead: add fields and raise its version (docs/schema-evolution.md), "
            f"or write this proposal elsewhere with --out to compare"
        )
    if history.is_dir():
        raise OnboardingError(
            f"{history} holds versions of dataset {proposal.dataset!r} in use: a new version 1 would break their "
            "chain. Evolve the current version instead (docs/schema-evolution.md)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(proposal.document, indent=2) + "\n")


def check_schema_file(path: Path, options: ConversionOptions | None = None) -> DeclaredSchema:
    """The schema file's current version once it reads as the job reads it and its history evolves compatibly.

    Raises ``SchemaError`` naming the file and each problem.
    """
    if not path.is_file():
        raise SchemaError(f"{path} not found")
    text = path.read_text()
    declared = DeclaredSchema.from_json(text, str(path))
    problems = field_name_problems(declared.fields)
    if problems:
        raise SchemaError(f"{path}: " + "; ".join(problems))
    layout = LakeLayout("s3://lake", "s3://quarantine", path.stem)
    args = JobArguments("check", "1970-01-01", layout, str(path), options=options or ConversionOptions())
    try:
        parse_schema(text, args)
    except JobArgumentError as exc:
        raise SchemaError(str(exc)) from exc
    return SchemaRegistry(path.parent, path.stem).check()


def _field_rows(fields: list[dict[str, Any]], observed: Observed, prefix: str = "") -> Iterator[str]:
    """One line per proposed path: its type and in how many of the objects around it it had a value."""
    objects = observed.kinds["struct"]
    for f in fields:
        member = observed.fields[f["name"]]
        path = f"{prefix}{f['name']}"
        yield f"  {path:<40} {type_string(f['type']):<24} in {member.present} of {objects}"
        spark_type, values = f["type"], member
        while isinstance(spark_type, dict) and spark_type["type"] == "array" and values.elements is not None:
            spark_type, values, path = spark_type["elementType"], values.elements, f"{path}[]"
        if isinstance(spark_type, dict) and spark_type["type"] == "struct":
            yield from _field_rows(spark_type["fields"], values, f"{path}.")


def _print_proposal(proposal: Proposal, sample: Sample, path: Path) -> None:
    objects = sample.objects.kinds["struct"]
    print(
        f"read {len(sample.uris)} file(s), {sample.lines} line(s): {objects} object(s), "
        f"{sample.malformed} malformed, {sample.not_objects} not an object"
    )
    print("fields (type, and in how many of the objects around them they had a value):")
    objects_seen = Observed(kinds=sample.objects.kinds, fields=sample.objects.fields)
    for row in _field_rows(proposal.document["fields"], objects_seen):
        print(row)
    if proposal.conflicts:
        print("conflicts (values by kind -> proposed type):")
        for c in proposal.conflicts:
            counts = ", ".join(f"{kind} {n}" for kind, n in c.counts.items()) or "-"
            print(f"  {c.path}: {counts} -> {c.resolution}: {c.note}")
    for key, why in proposal.left_out.items():
        print(f"left out {key!r}: {why}")
    for problem in proposal.problems:
        print(f"to fix before use: {problem}")
    print(
        f"wrote {path} (version 1, {len(proposal.document['fields'])} top-level fields). Review it (money as "
        f"decimal(p,s), ids as string, maps), then: python -m tools.schema check {path}"
    )


def main(argv: list[str] | None = None, storage: Storage | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.schema", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    propose_cmd = commands.add_parser("propose", help="propose a declared schema from sample NDJSON files")
    propose_cmd.add_argument(
        "samples", nargs="+", help="local files or folders, s3://bucket/key or s3://bucket/prefix/"
    )
    propose_cmd.add_argument("--dataset", required=True, help="the dataset's name (the setting 'dataset')")
    propose_cmd.add_argument("--out", type=Path, help="where to write it (default glue_scripts/schemas/<dataset>.json)")
    propose_cmd.add_argument("--lines-per-file", type=int, default=100_000, help="lines read per file (100000)")
    propose_cmd.add_argument("--endpoint-url", help="S3 endpoint for s3:// samples (default: boto3's)")
    check_cmd = commands.add_parser("check", help="check a schema file and the history of its versions")
    check_cmd.add_argument("schema", type=Path, help="glue_scripts/schemas/<dataset>.json")
    check_cmd.add_argument("--conversion", default="{}", help='the setting "conversion" (JSON) the job runs with')
    args = parser.parse_args(argv)
    try:
        if args.command == "propose":
            return _propose_command(args, storage or Storage(endpoint_url=args.endpoint_url))
        options = ConversionOptions.from_mapping(json.loads(args.conversion))
        current = check_schema_file(args.schema, options)
    except (OnboardingError, SchemaError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OptionError, ValueError) as exc:
        print(f"error: --conversion {exc}", file=sys.stderr)
        return 1
    print(f"{args.schema}: version {current.version}, {len(current.fields)} top-level fields; every version checked")
    return 0


def _propose_command(args: argparse.Namespace, storage: Storage) -> int:
    PipelineSettings(dataset=args.dataset)  # a dataset name the settings accept, or SettingsError naming it
    if args.lines_per_file < 1:
        raise OnboardingError(f"--lines-per-file must be at least 1, not {args.lines_per_file}")
    path = args.out or SCHEMAS / f"{args.dataset}.json"
    sample = observe_samples(sample_uris(args.samples, storage), storage, args.lines_per_file)
    proposal = propose(sample, args.dataset)
    write_proposal(proposal, path)
    _print_proposal(proposal, sample, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
