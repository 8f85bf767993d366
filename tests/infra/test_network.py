"""No path to the internet anywhere in infra/, and every AWS service the pipeline and MWAA call has a VPC endpoint.

Read statically (python-hcl2): security groups and their rules, routes, internet
and NAT gateways, and the network module's endpoints. The plan-time half of
"every service has an endpoint" is the network module's own precondition; this
test pins the shape that makes the precondition cover every required service.
"""

from __future__ import annotations

import re

import hcl2
import pytest

from tests.infra import hcl

NETWORK = hcl.INFRA / "modules" / "network"
GLUE = hcl.INFRA / "modules" / "glue"
MWAA = hcl.INFRA / "modules" / "mwaa"
OPEN_CIDRS = ("0.0.0.0/0", "::/0")
# The one CIDR a rule may name: the VPC's own (the endpoints' ingress). Everything else is a security group,
# a gateway endpoint's prefix list, or the group itself.
VPC_CIDR = "${data.aws_vpc.this.cidr_block}"
CIDR_FIELDS = (
    "cidr_blocks",
    "ipv6_cidr_blocks",
    "cidr_ipv4",
    "cidr_ipv6",
    "cidr_block",
    "ipv6_cidr_block",
    "destination_cidr_block",
    "destination_ipv6_cidr_block",
)
RULE_RESOURCES = (
    "aws_security_group_rule",
    "aws_vpc_security_group_ingress_rule",
    "aws_vpc_security_group_egress_rule",
    "aws_route",
    "aws_network_acl_rule",
)
RULE_BLOCKS = {
    "aws_security_group": ("ingress", "egress"),
    "aws_default_security_group": ("ingress", "egress"),
    "aws_route_table": ("route",),
    "aws_default_route_table": ("route",),
    "aws_network_acl": ("ingress", "egress"),
    "aws_default_network_acl": ("ingress", "egress"),
}
INTERNET_RESOURCES = ("aws_internet_gateway", "aws_egress_only_internet_gateway", "aws_nat_gateway", "aws_eip")
# AWS's list of endpoints for an MWAA environment in a VPC without internet access (MWAA User Guide,
# "Creating the required VPC service endpoints in an Amazon VPC with private routing").
MWAA_PRIVATE_ROUTING = {
    "s3",
    "monitoring",
    "ecr.dkr",
    "ecr.api",
    "logs",
    "sqs",
    "kms",
    "airflow.api",
    "airflow.env",
    "airflow.ops",
}
# What the Glue job reaches from its workers: its script and data (s3), its runtime's Glue API, continuous logs,
# job metrics, the bookmark key of its security configuration, regional STS.
GLUE_JOB = {"s3", "glue", "logs", "monitoring", "kms", "sts"}


def _rules(doc: dict) -> list[tuple[str, dict]]:
    """(where, rule) for every rule-like block or resource in a parsed .tf file."""
    found = []
    for kind in RULE_RESOURCES:
        for name, body in hcl.blocks(doc, "resource", kind).items():
            found.append((f"{kind}.{name}", body))
    for kind, fields in RULE_BLOCKS.items():
        for name, body in hcl.blocks(doc, "resource", kind).items():
            for field in fields:
                for rule in body.get(field, []):
                    found.append((f"{kind}.{name}.{field}", rule))
                for dynamic in body.get("dynamic", []):
                    for rule in dynamic.get(field, {}).get("content", []):
                        found.append((f"{kind}.{name}.dynamic {field}", rule))
    return found


def network_violations(doc: dict, where: str) -> list[str]:
    """Rules that reach beyond the VPC, and internet or NAT gateways, in one parsed .tf file."""
    violations = []
    for kind in INTERNET_RESOURCES:
        violations += [f"{where}: {kind}.{name}" for name in hcl.blocks(doc, "resource", kind)]
    for rule_at, rule in _rules(doc):
        for field in CIDR_FIELDS:
            values = rule.get(field)
            for value in [values] if isinstance(values, str) else values or []:
                if value != VPC_CIDR:
                    violations.append(f"{where}: {rule_at} {field} = {value!r}")
    return violations


def _doc(text: str) -> dict:
    return hcl2.loads(text, serialization_options=hcl._OPTIONS)


def test_no_rule_or_route_reaches_beyond_the_vpc():
    violations = [
        v for path in hcl.tf_files() for v in network_violations(hcl.load(path), str(path.relative_to(hcl.INFRA)))
    ]
    assert not violations, "\n".join(violations)


def test_no_open_cidr_is_written_anywhere_in_infra():
    # Second net: variables, defaults, tfvars examples and comments (a rule could take its CIDR from any of them).
    texts = [
        p for p in hcl.INFRA.rglob("*") if p.is_file() and p.suffix in {".tf", ".example", ".tftpl", ".json", ".hcl"}
    ]
    offenders = [f"{p.relative_to(hcl.INFRA)}: {c}" for p in texts for c in OPEN_CIDRS if c in p.read_text()]
    assert not offenders, offenders


@pytest.mark.parametrize(
    "text",
    [
        'resource "aws_security_group" "x" {\n egress {\n cidr_blocks = ["0.0.0.0/0"]\n }\n}',
        'resource "aws_security_group" "x" {\n ingress {\n ipv6_cidr_blocks = ["::/0"]\n }\n}',
        'resource "aws_security_group_rule" "x" {\n type = "egress"\n cidr_blocks = ["0.0.0.0/1", "128.0.0.0/1"]\n}',
        'resource "aws_vpc_security_group_egress_rule" "x" {\n cidr_ipv4 = var.anywhere\n}',
        'resource "aws_route" "x" {\n destination_cidr_block = "0.0.0.0/0"\n}',
        'resource "aws_route_table" "x" {\n route {\n ipv6_cidr_block = "::/0"\n }\n}',
        'resource "aws_nat_gateway" "x" {\n subnet_id = "s"\n}',
        'resource "aws_security_group" "x" {\n dynamic "egress" {\n for_each = [1]\n'
        ' content {\n cidr_blocks = ["0.0.0.0/0"]\n }\n }\n}',
    ],
)
def test_the_checker_finds_paths_beyond_the_vpc(text):
    assert network_violations(_doc(text), "x.tf")


def test_the_checker_accepts_the_vpc_cidr_groups_and_prefix_lists():
    text = (
        'resource "aws_security_group" "x" {\n'
        " ingress {\n cidr_blocks = [data.aws_vpc.this.cidr_block]\n }\n"
        " egress {\n security_groups = var.endpoint_security_group_ids\n }\n"
        " egress {\n prefix_list_ids = [var.s3_prefix_list_id]\n }\n"
        " egress {\n self = true\n }\n}"
    )
    assert network_violations(_doc(text), "x.tf") == []


def _security_group(folder, name: str) -> dict:
    return hcl.blocks(hcl.module_doc(folder), "resource", "aws_security_group")[name]


def _peers(rule: dict) -> set[str]:
    """What a rule lets the group talk to, as written: itself, groups, prefix lists, CIDRs."""
    peers = {"self"} if rule.get("self") else set()
    return peers | {str(rule[f]) for f in ("security_groups", "prefix_list_ids", "cidr_blocks") if f in rule}


def test_the_glue_job_runs_in_the_vpc_through_a_network_connection():
    doc = hcl.module_doc(GLUE)
    job = hcl.blocks(doc, "resource", "aws_glue_job")["this"]
    assert job["connections"] == ["${aws_glue_connection.vpc.name}"]
    connection = hcl.blocks(doc, "resource", "aws_glue_connection")["vpc"]
    assert connection["connection_type"] == "NETWORK"
    (placement,) = connection["physical_connection_requirements"]
    assert placement["subnet_id"] == "${data.aws_subnet.job.id}"
    assert placement["availability_zone"] == "${data.aws_subnet.job.availability_zone}"
    assert placement["security_group_id_list"] == ["${aws_security_group.job.id}"]
    call = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "module")["glue"]
    assert call["subnet_id"] == "${local.glue_subnet_id}"
    assert call["s3_prefix_list_id"] == '${module.network.gateway_prefix_list_ids["s3"]}'
    assert call["endpoint_security_group_ids"] == "${module.network.endpoint_security_group_ids}"


def test_the_glue_group_allows_its_workers_and_the_endpoints_only():
    group = _security_group(GLUE, "job")
    all_tcp = {"from_port": 0, "to_port": 65535, "protocol": "tcp"}
    (ingress,) = group["ingress"]
    assert {k: ingress[k] for k in all_tcp} == all_tcp
    assert _peers(ingress) == {"self"}  # Glue's requirement: workers reach each other on every TCP port
    egress = {frozenset(_peers(rule)): rule for rule in group["egress"]}
    assert set(egress) == {
        frozenset({"self"}),
        frozenset({"${var.endpoint_security_group_ids}"}),
        frozenset({"['${var.s3_prefix_list_id}']"}),
    }
    assert {k: egress[frozenset({"self"})][k] for k in all_tcp} == all_tcp
    for peer in ("${var.endpoint_security_group_ids}", "['${var.s3_prefix_list_id}']"):
        rule = egress[frozenset({peer})]
        assert (rule["from_port"], rule["to_port"], rule["protocol"]) == (443, 443, "tcp")


def test_the_mwaa_group_reaches_itself_and_the_endpoints_only():
    group = _security_group(MWAA, "mwaa")
    (ingress,) = group["ingress"]
    assert _peers(ingress) == {"self"}
    peers = {frozenset(_peers(rule)): rule for rule in group["egress"]}
    assert set(peers) == {
        frozenset({"self"}),
        frozenset({"${var.endpoint_security_group_ids}"}),
        frozenset({"${values(var.gateway_prefix_list_ids)}"}),
    }
    for peer in ("${var.endpoint_security_group_ids}", "${values(var.gateway_prefix_list_ids)}"):
        rule = peers[frozenset({peer})]
        assert (rule["from_port"], rule["to_port"], rule["protocol"]) == (443, 443, "tcp")
    call = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "module")["mwaa"]
    assert call["endpoint_security_group_ids"] == "${module.network.endpoint_security_group_ids}"
    assert call["gateway_prefix_list_ids"] == "${module.network.gateway_prefix_list_ids}"


def test_the_endpoints_take_https_from_the_vpc_and_send_nothing():
    group = _security_group(NETWORK, "endpoints")
    (ingress,) = group["ingress"]
    assert (ingress["from_port"], ingress["to_port"], ingress["protocol"]) == (443, 443, "tcp")
    assert ingress["cidr_blocks"] == [VPC_CIDR]
    assert group["egress"] == []


def _required() -> dict[str, str]:
    return hcl.blocks(hcl.module_doc(NETWORK), "locals")["required_endpoints"]


def _flat(expression: str) -> str:
    return re.sub(r"\s+", " ", expression).strip()


def test_every_service_mwaa_and_the_glue_job_call_is_required():
    required = _required()
    assert set(required.values()) == {"Gateway", "Interface"}
    assert {"s3": "Gateway", "dynamodb": "Gateway"}.items() <= required.items()
    assert set(required) >= MWAA_PRIVATE_ROUTING, MWAA_PRIVATE_ROUTING - set(required)
    assert set(required) >= GLUE_JOB, GLUE_JOB - set(required)
    # The DAGs' own calls: docs/deployment.md maps every IAM action to one of these (test_deployment_docs.py).


def test_every_required_service_gets_an_endpoint_created_or_named():
    doc = hcl.module_doc(NETWORK)
    local = hcl.blocks(doc, "locals")
    # Created: every required service not named; split by type into the two endpoint resources.
    assert _flat(local["created"]) == (
        "${{for service, type in local.required_endpoints : service => type "
        "if !contains(keys(var.existing_endpoint_ids), service)}}"
    )
    endpoints = hcl.blocks(doc, "resource", "aws_vpc_endpoint")
    for name, kind in (("gateway", "Gateway"), ("interface", "Interface")):
        assert _flat(endpoints[name]["for_each"]) == (
            f'${{{{for service, type in local.created : service => type if type == "{kind}"}}}}'
        )
        assert endpoints[name]["vpc_endpoint_type"] == "${each.value}"
        assert endpoints[name]["service_name"] == "com.amazonaws.${data.aws_region.current.name}.${each.key}"
    assert endpoints["interface"]["private_dns_enabled"] is True
    assert endpoints["gateway"]["route_table_ids"] == "${var.route_table_ids}"
    # Named: each checked against the service it is named for.
    existing = hcl.blocks(doc, "data", "aws_vpc_endpoint")["existing"]
    assert existing["for_each"] == "${var.existing_endpoint_ids}"
    (lifecycle,) = existing["lifecycle"]
    checks = " ".join(c["condition"] for c in lifecycle["precondition"] + lifecycle["postcondition"])
    for fragment in (
        "contains(keys(local.required_endpoints), each.key)",
        "self.vpc_id == var.vpc_id",
        "self.service_name",
        "self.private_dns_enabled",
        "self.route_table_ids",
    ):
        assert fragment in checks, fragment
    # And the plan fails unless every required service has one of the two.
    (precondition,) = hcl.blocks(doc, "output")["endpoint_ids"]["precondition"]
    assert precondition["condition"] == (
        "${length(setsubtract(keys(local.required_endpoints), keys(local.endpoint_ids))) == 0}"
    )
    assert _flat(local["endpoint_ids"]).count("=> endpoint.id") == 3


def test_the_env_root_always_declares_the_endpoints_and_names_existing_ones():
    call = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "module")["network"]
    assert "count" not in call
    assert "for_each" not in call
    assert call["existing_endpoint_ids"] == "${var.existing_vpc_endpoint_ids}"
    variables = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "variable")
    assert "create_vpc_endpoints" not in variables  # endpoints are not optional any more
