"""The buckets' policies (infra/modules/storage), rendered from the HCL for given deployment values.

The resolver in ``hcl`` follows plain references only. The policy document has two
computed parts, ``local.exceptions_by_bucket`` (which outside-endpoint exceptions a
bucket has) and the exempt principals of ``DenyOutsideVpcEndpoint``; ``render``
pins their expressions to the text below and computes them the same way, so an
edit of either fails here until this mirror follows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.infra import hcl

STORAGE = hcl.INFRA / "modules" / "storage"

EXCEPTIONS_BY_BUCKET = (
    "${{for bucket in keys(var.bucket_names) : bucket => "
    "{for sid, exception in local.outside_endpoint_exceptions : sid => exception "
    "if exception.bucket == bucket && length(exception.principals) > 0}}}"
)
EXEMPT_PRINCIPALS = (
    "${concat([var.deployer_role_arn, local.service_linked_roles], "
    "flatten([for exception in values(local.exceptions_by_bucket[each.key]) : exception.principals]))}"
)


@dataclass(frozen=True)
class Deployment:
    """The values a plan would know: the env root's names plus what other modules and the account supply."""

    name_prefix: str = "acme-ndjson-prod"
    account: str = "111122223333"
    partition: str = "aws"
    s3_vpc_endpoint_id: str = "vpce-0s3gateway00000"
    deployer_role_arn: str = "arn:aws:iam::111122223333:role/ndjson-deployer"
    mwaa_execution_role_arn: str = "arn:aws:iam::111122223333:role/acme-ndjson-prod-mwaa-execution"
    landing_writer_role_arns: tuple[str, ...] = ("arn:aws:iam::111122223333:role/clickstream-producer",)

    def storage_inputs(self) -> dict[str, Any]:
        context = hcl.env_context(
            self.name_prefix,
            deployer_role_arn=self.deployer_role_arn,
            landing_writer_role_arns=list(self.landing_writer_role_arns),
        )
        inputs = hcl.module_inputs("storage", context)
        # Outputs of other modules: what the network and iam modules would hand over.
        return {
            **inputs,
            "s3_vpc_endpoint_id": self.s3_vpc_endpoint_id,
            "mwaa_execution_role_arn": self.mwaa_execution_role_arn,
        }


def _normalise(expression: str) -> str:
    return re.sub(r"\s+", " ", expression).replace("( ", "(").replace(" )", ")").replace("[ ", "[").replace(" ]", "]")


def _document_block() -> dict:
    return hcl.blocks(hcl.module_doc(STORAGE), "data", "aws_iam_policy_document")["bucket"]


def _locals(context: dict) -> dict[str, Any]:
    declared = hcl.blocks(hcl.module_doc(STORAGE), "locals")
    if _normalise(declared["exceptions_by_bucket"]) != _normalise(EXCEPTIONS_BY_BUCKET):
        raise AssertionError(f"local.exceptions_by_bucket changed: {declared['exceptions_by_bucket']}")
    exceptions = hcl.resolve(declared["outside_endpoint_exceptions"], context)
    by_bucket = {
        bucket: {sid: e for sid, e in exceptions.items() if e["bucket"] == bucket and len(e["principals"]) > 0}
        for bucket in context["var"]["bucket_names"]
    }
    return {
        "outside_endpoint_exceptions": exceptions,
        "service_linked_roles": hcl.resolve(declared["service_linked_roles"], context),
        "exceptions_by_bucket": by_bucket,
    }


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _statement(body: dict, context: dict) -> dict:
    statement: dict[str, Any] = {"Sid": hcl.resolve(body["sid"], context), "Effect": body.get("effect", "Allow")}
    for field_name, key in (("actions", "Action"), ("not_actions", "NotAction"), ("resources", "Resource")):
        if field_name in body:
            statement[key] = _one_or_list(hcl.resolve(body[field_name], context))
    for principal in body.get("principals", []):
        if principal["type"] == "*" and principal["identifiers"] == ["*"]:
            statement["Principal"] = "*"
        else:
            statement.setdefault("Principal", {})[principal["type"]] = _one_or_list(principal["identifiers"])
    conditions: dict[str, dict[str, Any]] = {}
    for condition in body.get("condition", []):
        values = condition["values"]
        if values == EXEMPT_PRINCIPALS or _normalise(str(values)) == _normalise(EXEMPT_PRINCIPALS):
            local = context["local"]
            exceptions = local["exceptions_by_bucket"][context["each"]["key"]].values()
            values = [context["var"]["deployer_role_arn"], local["service_linked_roles"]] + [
                p for e in exceptions for p in e["principals"]
            ]
        else:
            values = hcl.resolve(values, context)
        if isinstance(values, str):
            raise AssertionError(f"unresolved condition values in {body['sid']}: {values}")
        conditions.setdefault(condition["test"], {})[condition["variable"]] = _one_or_list(values)
    if conditions:
        statement["Condition"] = conditions
    return statement


def render(deployment: Deployment | None = None) -> dict[str, dict]:
    """bucket role (landing, lake, quarantine, assets) -> its bucket policy document."""
    deployment = deployment or Deployment()
    inputs = deployment.storage_inputs()
    base: dict[str, Any] = {
        "var": inputs,
        "data": {
            "aws_partition": {"current": {"partition": deployment.partition}},
            "aws_caller_identity": {"current": {"account_id": deployment.account}},
        },
    }
    base["local"] = _locals(base)
    block = _document_block()
    dynamics = block.get("dynamic", [])
    documents = {}
    for bucket, name in inputs["bucket_names"].items():
        context = {
            **base,
            "each": {"key": bucket, "value": {"arn": f"arn:{deployment.partition}:s3:::{name}", "id": name}},
        }
        statements = [_statement(body, context) for body in block["statement"]]
        for dynamic in dynamics:
            (template,) = dynamic["statement"]["content"]
            if dynamic["statement"]["for_each"] != "${local.exceptions_by_bucket[each.key]}":
                raise AssertionError(f"dynamic statement over {dynamic['statement']['for_each']}")
            for sid, exception in base["local"]["exceptions_by_bucket"][bucket].items():
                item = {**context, "statement": {"key": sid, "value": exception}}
                statements.append(_statement(template, item))
        documents[bucket] = {"Version": "2012-10-17", "Statement": statements}
    return documents
