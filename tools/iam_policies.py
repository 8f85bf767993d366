"""The pipeline's IAM policies, rendered from the templates Terraform renders too.

``infra/policies/*.json.tftpl`` are the one definition of what the MWAA execution
role and the Glue job role may do. Terraform fills their ``${name}`` placeholders
with ``templatefile()`` (infra/modules/iam); this module fills them with the local
stack's ARNs, so the local identities run under exactly the deployed policies.
Standard library only: tools/iac_checks.sh runs it in checkov's environment.

``python -m tools.iam_policies cloudformation`` prints the rendered policies as a
CloudFormation template, the form in which checkov can check them (it does not
evaluate ``templatefile()``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ndjson_pipeline.resources import ResourceNames, default_names, landing_prefix, ledger_spec

POLICIES = Path(__file__).resolve().parent.parent / "infra" / "policies"
# role -> template; the role names are the Terraform ones (infra/modules/iam).
TEMPLATES = {"mwaa-execution": "mwaa-execution.json.tftpl", "glue-job": "glue-job.json.tftpl"}
LOCAL_ACCOUNT = "123456789012"  # moto's default account
LOCAL_REGION = "us-east-1"
LOCAL_PARTITION = "aws"
# The local stack has no VPC: the Glue job's network placeholders get ids of the shape EC2 gives.
LOCAL_GLUE_SUBNET = "subnet-00000000000000000"
LOCAL_GLUE_SECURITY_GROUP = "sg-00000000000000000"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PolicyTemplateError(ValueError):
    """A template is malformed or a placeholder has no value; the message names the template."""


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall((POLICIES / template).read_text()))


def render(template: str, variables: dict[str, str]) -> dict:
    """The policy document of ``template`` with its placeholders filled, as templatefile() would."""
    path = POLICIES / template
    text = path.read_text()
    if "%{" in text or "$${" in text:
        raise PolicyTemplateError(f"{path}: only plain ${{name}} placeholders are supported")
    missing = placeholders(template) - set(variables)
    if missing:
        raise PolicyTemplateError(f"{path}: no value for placeholder(s) {sorted(missing)}")
    rendered = _PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), text)
    try:
        return json.loads(rendered)
    except json.JSONDecodeError as exc:
        raise PolicyTemplateError(f"{path}: not JSON once rendered: {exc}") from exc


def role_name(names: ResourceNames, role: str) -> str:
    return f"{names.name_prefix}-{role}"


def local_variables(
    names: ResourceNames, dataset: str = "events", metric_namespace: str = "NdjsonPipeline", **overrides: str
) -> dict:
    """The values Terraform passes (infra/modules/iam ``policy_vars``), for the moto account and region.

    :param overrides: values known only once the local resources exist (the KMS key ARNs moto generated).
    """
    region, account, partition = LOCAL_REGION, LOCAL_ACCOUNT, LOCAL_PARTITION

    def bucket(name: str) -> str:
        return f"arn:{partition}:s3:::{name}"

    def key(alias: str) -> str:
        return f"arn:{partition}:kms:{region}:{account}:alias/{names.name_prefix}-{alias}"

    table = f"arn:{partition}:dynamodb:{region}:{account}:table/{names.ledger_table}"
    variables = {
        "partition": partition,
        "region": region,
        "account": account,
        "mwaa_environment_name": names.name_prefix,
        "landing_bucket_arn": bucket(names.landing_bucket),
        "lake_bucket_arn": bucket(names.lake_bucket),
        "quarantine_bucket_arn": bucket(names.quarantine_bucket),
        "assets_bucket_arn": bucket(names.assets_bucket),
        "landing_prefix": landing_prefix(),
        "dataset": dataset,
        "queue_arn": f"arn:{partition}:sqs:{region}:{account}:{names.queue}",
        "queue_kms_key_arn": key("queue"),
        "data_kms_key_arn": key("data"),
        "ledger_table_arn": table,
        "ledger_work_index_arn": f"{table}/index/{ledger_spec()['work_index']['name']}",
        "glue_job_arn": f"arn:{partition}:glue:{region}:{account}:job/{names.glue_job}",
        "catalog_database": names.catalog_database,
        "glue_log_group_name": f"/aws-glue/jobs/{names.glue_job}",
        "glue_security_configuration_name": names.glue_job,
        "glue_role_name": role_name(names, "glue-job"),
        "glue_connection_name": names.glue_job,
        "glue_subnet_id": LOCAL_GLUE_SUBNET,
        "glue_security_group_id": LOCAL_GLUE_SECURITY_GROUP,
        "alerts_topic_arn": f"arn:{partition}:sns:{region}:{account}:{names.name_prefix}-alerts",
        "alerts_kms_key_arn": key("alerts"),
        "metric_namespace": metric_namespace,
    }
    unknown = set(overrides) - set(variables)
    if unknown:
        raise PolicyTemplateError(f"no policy template variable(s) {sorted(unknown)}")
    return {**variables, **overrides}


def local_policies(
    names: ResourceNames, dataset: str = "events", metric_namespace: str = "NdjsonPipeline", **overrides: str
) -> dict:
    """role -> rendered policy document for the local stack."""
    variables = local_variables(names, dataset, metric_namespace, **overrides)
    return {role: render(template, variables) for role, template in TEMPLATES.items()}


def cloudformation(names: ResourceNames) -> dict:
    """The rendered policies as IAM managed policies of a CloudFormation template (for checkov)."""
    resources = {}
    for role, document in local_policies(names).items():
        logical = "".join(part.capitalize() for part in role.split("-")) + "Policy"
        resources[logical] = {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {"ManagedPolicyName": role_name(names, role), "PolicyDocument": document},
        }
    return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}


def main(argv: list[str]) -> None:
    if argv != ["cloudformation"]:
        sys.exit("usage: python -m tools.iam_policies cloudformation")
    print(json.dumps(cloudformation(default_names()), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
