"""Deterministic sample NDJSON for the conversion job: the tests, the benchmark and local runs share it.

Records match ``glue_scripts/schemas/events.json``: an ISO-8601 event time
(a timestamp), a money amount (a decimal), nested structs, arrays of strings and
arrays of structs, and a struct holding arrays of structs.
"""

from __future__ import annotations

import gzip
import json
import random

COUNTRIES = ("DE", "FR", "GB", "US", "JP", "BR", "IN", "NL")
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "search")
DAY = "2026-11-24"


def make_event(rng: random.Random, event_id: str, day: str = DAY) -> dict:
    """One realistic event; every field of the declared schema appears with its declared type."""
    items = [
        {"sku": f"SKU-{rng.randint(1, 99999):05d}", "qty": rng.randint(1, 5), "price": round(rng.uniform(1, 500), 2)}
        for _ in range(rng.randint(0, 4))
    ]
    return {
        "event_id": event_id,
        "event_time": f"{day}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        f".{rng.randint(0, 999):03d}Z",
        "event_type": rng.choice(EVENT_TYPES),
        "user": {"id": f"u-{rng.randint(1, 10**6)}", "country": rng.choice(COUNTRIES), "age": rng.randint(16, 90)},
        "value": round(rng.uniform(0, 1000), 3),
        "count": rng.randint(0, 10**6),
        "tags": [rng.choice(("new", "promo", "mobile", "web", "returning")) for _ in range(rng.randint(0, 3))],
        "items": items,
        "context": {
            "session_id": f"s-{rng.getrandbits(48):012x}",
            "page": {"url": f"https://shop.example/p/{rng.randint(1, 5000)}", "referrer": None},
            "experiments": [
                {"name": f"exp-{n}", "variant": rng.choice(("a", "b")), "metrics": [{"k": "score", "v": rng.random()}]}
                for n in range(rng.randint(0, 2))
            ],
        },
        # The order total, written with two decimals: the schema declares it decimal(12,2), read exactly.
        "amount": round(sum(item["qty"] * item["price"] for item in items), 2),
    }


def bad_line(rng: random.Random, event_id: str) -> tuple[str, str]:
    """A line the job must not load as-is, and its kind: malformed, not_object or type_conflict."""
    kind = rng.choice(("malformed", "not_object", "type_conflict"))
    if kind == "malformed":
        return json.dumps(make_event(rng, event_id))[:-7], kind
    if kind == "not_object":
        return rng.choice(('["an", "array"]', "42", '"a string"', "null")), kind
    event = make_event(rng, event_id)
    event["value"] = "not-a-number"
    return json.dumps(event), kind


def ndjson_body(
    lines: int, *, seed: int = 0, bad_fraction: float = 0.0, prefix: str = "e", day: str = DAY
) -> tuple[bytes, dict[str, int]]:
    """An NDJSON body of ``lines`` lines and the number of lines of each kind in it ("good" and the bad kinds).

    Event ids are ``{prefix}-{n}``, unique per prefix, so tests can compare exact row sets.
    """
    rng = random.Random(seed)
    kinds = {"good": 0, "malformed": 0, "not_object": 0, "type_conflict": 0}
    out = []
    for n in range(lines):
        event_id = f"{prefix}-{n}"
        if bad_fraction and rng.random() < bad_fraction:
            text, kind = bad_line(rng, event_id)
        else:
            text, kind = json.dumps(make_event(rng, event_id, day), separators=(",", ":")), "good"
        kinds[kind] += 1
        out.append(text)
    return ("\n".join(out) + "\n").encode() if out else b"", kinds


def gzip_body(body: bytes) -> bytes:
    # mtime=0 keeps the compressed bytes, and so the eTag, deterministic.
    return gzip.compress(body, mtime=0)
