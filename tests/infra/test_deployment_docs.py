"""docs/deployment.md says what infra/ does: its alarms, endpoints, security-group rules, bucket policies and IAM.

Each table the operators rely on is parsed and compared with the Terraform and the
policy templates, both ways, so a rule, alarm or permission added on one side
without the other fails here.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra import hcl
from tests.infra.bucket_policies import render
from tools.iam_policies import POLICIES, TEMPLATES

DOCS = (hcl.ROOT / "docs" / "deployment.md").read_text()
NETWORK = hcl.INFRA / "modules" / "network"
MONITORING = hcl.INFRA / "modules" / "monitoring"
SERVICE_SIDE = "service-side"
_CODE = re.compile(r"`([^`]+)`")


def _section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", DOCS, flags=re.M)
    assert match, f"docs/deployment.md has no heading {heading!r}"
    level = len(match.group(1))
    rest = DOCS[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return rest[: end.start()] if end else rest


def _table(text: str, first_column: str) -> list[list[str]]:
    """Rows (cells stripped) of the markdown table whose header starts with ``first_column``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip()[1:-1].split("|")])
    return rows


def _codes(cell: str) -> list[str]:
    return _CODE.findall(cell)


# ------------------------------------------------------------------------------------------------ alarms


def test_every_alarm_and_the_glue_rule_are_explained_and_nothing_else():
    rows = _table(_section("Alarms (SNS topic `<prefix>-alerts`, KMS-encrypted)"), "alarm")
    documented = {_codes(row[0])[0] for row in rows}
    doc = hcl.module_doc(MONITORING)
    context = {"var": {"name_prefix": "<prefix>"}}
    alarms = hcl.blocks(doc, "resource", "aws_cloudwatch_metric_alarm").values()
    names = {hcl.resolve(a["alarm_name"], context) for a in alarms}
    rules = {hcl.resolve(r["name"], context) for r in hcl.blocks(doc, "resource", "aws_cloudwatch_event_rule").values()}
    assert documented == names | rules
    for row in rows:
        assert all(row[1:]), f"{row[0]}: every alarm says what it watches, what it means and what to do"


# --------------------------------------------------------------------------------------------- endpoints


def test_the_endpoint_table_is_the_network_modules_list():
    rows = _table(_section("Network: no route to the internet"), "service")
    documented = {_codes(row[0])[0]: row[1] for row in rows}
    assert documented == hcl.blocks(hcl.module_doc(NETWORK), "locals")["required_endpoints"]


# ------------------------------------------------------------------------------------------ security groups


# The groups as the docs name them -> the module that declares each.
GROUPS = {"<prefix>-vpc-endpoints": "network", "<prefix>-ndjson-to-parquet-glue": "glue", "<environment>-mwaa": "mwaa"}


def _rules_in_infra() -> set[tuple[str, str, str]]:
    """(module, direction, description) of every inline rule of every security group; "" for a direction without any."""
    found = set()
    for path in hcl.tf_files():
        for body in hcl.blocks(hcl.load(path), "resource", "aws_security_group").values():
            for field, direction in (("ingress", "in"), ("egress", "out")):
                rules = body.get(field, [])
                found |= {(path.parent.name, direction, rule["description"]) for rule in rules}
                if not rules:
                    found.add((path.parent.name, direction, ""))
    return found


def test_every_security_group_rule_is_described_and_nothing_else():
    rows = _table(_section("Security groups"), "group")
    described = {(GROUPS[_codes(row[0])[0]], row[1], row[4]) for row in rows}
    assert described == _rules_in_infra()
    assert all(row[5] for row in rows), "every rule says why"


# ------------------------------------------------------------------------------------------ bucket policies


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("landing", lambda policies: policies["landing"]),
        ("assets, statement 3", lambda policies: policies["assets"]["Statement"][2]),
    ],
)
def test_the_rendered_bucket_policies_in_the_docs_are_what_terraform_renders(marker, expected):
    block = re.search(rf"<!-- rendered bucket policy: {re.escape(marker)} -->\n```json\n(.*?)\n```", DOCS, re.S)
    assert block, marker
    assert json.loads(block.group(1)) == expected(render())


def test_every_bucket_policy_statement_is_explained():
    rows = _table(_section("Bucket policies"), "statement")
    explained = {_codes(row[0])[0] for row in rows}
    rendered = {s["Sid"] for document in render().values() for s in document["Statement"]}
    assert explained == rendered


# ------------------------------------------------------------------------------------------------------ IAM


def _iam_rows() -> list[list[str]]:
    return _table(_section("IAM: every AWS API the code calls"), "role")


def _template_statements() -> dict[tuple[str, str], set[str]]:
    found = {}
    for role, template in TEMPLATES.items():
        for statement in json.loads((POLICIES / template).read_text())["Statement"]:
            actions = statement["Action"]
            found[(role, statement["Sid"])] = {actions} if isinstance(actions, str) else set(actions)
    return found


def test_every_statement_and_action_of_the_templates_is_in_the_api_table_and_nothing_else():
    documented = {}
    for row in _iam_rows():
        role, sid = _codes(row[0])[0], _codes(row[1])[0]
        assert (role, sid) not in documented, f"{role} {sid} has two rows"
        documented[(role, sid)] = set(_codes(row[2]))
    assert documented == _template_statements()


def test_every_api_row_names_the_calls_and_an_endpoint_the_network_module_provides():
    required = hcl.blocks(hcl.module_doc(NETWORK), "locals")["required_endpoints"]
    for row in _iam_rows():
        assert row[3], f"{row[1]}: which API operations use it"
        endpoint = row[4] if row[4] == SERVICE_SIDE else _codes(row[4])[0]
        assert endpoint == SERVICE_SIDE or endpoint in required, f"{row[1]}: {row[4]}"
        if endpoint != SERVICE_SIDE:
            # The endpoint is the actions' service (CloudWatch's is "monitoring"); MWAA's components publish through
            # "airflow.ops", its control-plane API (CLI tokens, the REST API) is "airflow.api".
            expected = {"cloudwatch": "monitoring", "airflow:PublishMetrics": "airflow.ops", "airflow": "airflow.api"}
            endpoints = {expected.get(a, expected.get(a.split(":")[0], a.split(":")[0])) for a in _codes(row[2])}
            assert endpoints == {endpoint}, row[1]
