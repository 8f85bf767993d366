"""What the local stack's IAM allowed and refused: a client of the server's ``/_iam`` endpoints.

``python -m tools.iam_report --endpoint URL`` prints, per identity, each action
with the policy statement and Resource pattern that allowed it, and every refusal.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
import urllib.request


def _request(endpoint: str, path: str, method: str = "GET", **parameters) -> dict:
    given = {k: v for k, v in parameters.items() if v}
    query = f"?{urllib.parse.urlencode(given)}" if given else ""
    request = urllib.request.Request(f"{endpoint}{path}{query}", method=method)  # noqa: S310 - the loopback emulator
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def calls(endpoint: str, identity: str | None = None) -> list[dict]:
    """Authorisations counted by identity, action, deciding statement and pattern (exact resource if refused)."""
    return _request(endpoint, "/_iam/calls", identity=identity)["calls"]


def denials(endpoint: str, identity: str | None = None, since: int = 0) -> list[dict]:
    """Refused calls numbered (their "seq") above ``since``, latest last, with the message the caller got."""
    return _request(endpoint, "/_iam/denials", identity=identity, since=since)["denials"]


def last_denial(endpoint: str) -> int:
    """The number of the latest refusal: pass it as ``since`` to see only later ones."""
    found = denials(endpoint)
    return found[-1]["seq"] if found else 0


def reset(endpoint: str) -> None:
    _request(endpoint, "/_iam/calls", method="DELETE")


def summary(endpoint: str, include_root: bool = False) -> str:
    lines = []
    for identity in sorted({c["identity"] for c in calls(endpoint)}):
        if identity == "root" and not include_root:
            continue
        lines.append(f"{identity}:")
        for c in calls(endpoint, identity):
            verdict = f"allowed by {c['statement']}" if c["allowed"] else "DENIED"
            lines.append(f"  {c['action']:<32} {c['resource']:<70} {verdict} ({c['count']}x)")
    for denial in denials(endpoint):
        lines.append(f"DENIED {denial['message']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="the local stack, e.g. http://127.0.0.1:5000")
    parser.add_argument("--root", action="store_true", help="include the root identity's calls")
    args = parser.parse_args()
    print(summary(args.endpoint, args.root))


if __name__ == "__main__":
    main()
