"""One file version, streamed: S3 (or local) chunks -> gunzip -> blocks of whole lines, within bounded memory.

Nothing here holds more than a block (``BLOCK_BYTES`` of decoded text plus the
line being cut) whatever the file's size or compression. A file that cannot be
read or decoded as a whole raises ``Unconvertible`` with the reason it is
quarantined for:

- "superseded": it no longer has the manifest's eTag (changed or deleted);
- "unreadable": S3 refuses it for good (403 AccessDenied, InvalidObjectState, ...);
- "undecodable gzip": a ``.gz`` file that is corrupt or truncated (checked to
  its end: a truncated file is never read as its readable prefix);
- "too large": more than ``--max_decompressed_mb`` MB of decoded text;
- "binary content": decoded text starting with a known binary signature.

Transient storage errors propagate (``ndjson_pipeline.storage``): the task, and
then the run, fails and is retried.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.manifest import SUPERSEDED
from ndjson_pipeline.storage import ObjectChanged, ObjectUnreadable, Storage

MiB = 1024 * 1024
# Stored bytes read at a time.
READ_BYTES = 8 * MiB
# Decoded text handed to the line parser at a time; a block ends at a line break.
BLOCK_BYTES = 16 * MiB
# A line longer than this is quarantined ("line too long") and skipped without being held.
MAX_LINE_BYTES = 32 * MiB
_GUNZIP_OUT_BYTES = 8 * MiB
# How decoded content that is not text starts; a file starting so is quarantined whole.
_SIGNATURES = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PAR1": "Parquet",
    b"Obj\x01": "Avro",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"%PDF-": "PDF",
    b"\x7fELF": "ELF",
    b"\xff\xfe": "UTF-16 byte-order mark",
    b"\xfe\xff": "UTF-16 byte-order mark",
}
_HEAD_BYTES = max(map(len, _SIGNATURES))


class Unconvertible(Exception):
    """The file cannot be converted at all; it is quarantined whole for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TextBlock:
    """Consecutive whole lines of a file (the file's last block may end without a line break).

    ``cut`` marks a block holding only the start of one line longer than ``MAX_LINE_BYTES``.
    """

    data: bytes
    first_line: int
    cut: bool = False


def text_blocks(storage: Storage, file: FileVersion, options: ConversionOptions) -> Iterator[TextBlock]:
    """The decoded text of one file version, in blocks of whole lines."""
    chunks = _stored_chunks(storage, file)
    if file.uri.lower().endswith(".gz"):
        chunks = gunzip_chunks(chunks)
    limit = int(options.max_decompressed_mb * MiB)
    checked = _checked(chunks, limit, options.max_decompressed_mb)
    return line_blocks(checked, prefix_bytes=4 * options.max_raw_chars, block_bytes=BLOCK_BYTES)


def _stored_chunks(storage: Storage, file: FileVersion) -> Iterator[bytes]:
    try:
        yield from storage.read_version_chunks(file.uri, file.etag, READ_BYTES)
    except ObjectChanged:
        raise Unconvertible(f"{SUPERSEDED}: {file.uri} no longer has eTag {file.etag} (changed or deleted)") from None
    except ObjectUnreadable as exc:
        raise Unconvertible(f"unreadable: {exc.code}: {exc.message}") from None


def gunzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress gzip data (one or more members, zero padding between them allowed), CRC and length checked.

    Each output chunk is at most ``_GUNZIP_OUT_BYTES``, so a highly compressed input cannot
    inflate in memory. A file that ends inside a member is an error, never a silent prefix.
    """
    member = None  # the decompressor of the member being read; None between members
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if member is None:
                    data = data.lstrip(b"\x00")
                    if not data:
                        break
                    member = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
                out = member.decompress(data, _GUNZIP_OUT_BYTES)
                if out:
                    yield out
                if member.eof:
                    data, member = member.unused_data, None
                else:
                    data = member.unconsumed_tail
        while member is not None:
            out = member.decompress(b"", _GUNZIP_OUT_BYTES)  # output zlib still holds
            if out:
                yield out
            elif member.eof:
                break
            else:
                raise Unconvertible("undecodable gzip: the file ends inside a compressed member (truncated)")
    except zlib.error as exc:
        raise Unconvertible(f"undecodable gzip: {exc}") from None


def _checked(chunks: Iterable[bytes], limit: int, limit_mb: float) -> Iterator[bytes]:
    """The decoded chunks, refused when they start with a binary signature or grow past the size limit."""
    head, seen = b"", 0
    held: list[bytes] | None = []  # chunks kept until the head is checked; None once it was
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise Unconvertible(f"too large: over {limit_mb:g} MB of decoded text (--max_decompressed_mb)")
        if held is None:
            yield chunk
            continue
        head += chunk[: _HEAD_BYTES - len(head)]
        held.append(chunk)
        if len(head) == _HEAD_BYTES:
            _refuse_binary(head)
            yield from held
            held = None
    if held:
        _refuse_binary(head)
        yield from held


def _refuse_binary(head: bytes) -> None:
    kind = next((name for magic, name in _SIGNATURES.items() if head.startswith(magic)), None)
    if kind is not None:
        raise Unconvertible(f"binary content ({kind} signature), not NDJSON text")


def line_blocks(chunks: Iterable[bytes], *, prefix_bytes: int, block_bytes: int) -> Iterator[TextBlock]:
    """Regroup chunks into blocks of whole lines of about ``block_bytes``, numbering lines from 1."""
    buffer, line, skipping = bytearray(), 1, False
    for chunk in chunks:
        if skipping:  # the rest of a line already reported as too long
            end = chunk.find(b"\n")
            if end < 0:
                continue
            chunk, line, skipping = chunk[end + 1 :], line + 1, False
        buffer += chunk
        while len(buffer) >= block_bytes:
            cut = buffer.rfind(b"\n") + 1
            if cut == 0:
                if len(buffer) <= MAX_LINE_BYTES:
                    break  # one long line: keep reading until it ends
                yield TextBlock(bytes(buffer[:prefix_bytes]), line, cut=True)
                buffer.clear()
                skipping = True
                break
            block = bytes(memoryview(buffer)[:cut])  # one copy: a slice of the bytearray would be a second
            del buffer[:cut]
            yield TextBlock(block, line)
            line += block.count(b"\n")
    if buffer and not skipping:
        yield TextBlock(bytes(buffer), line)
