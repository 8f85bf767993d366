"""Terraform and the local stack render the same policy templates with the same placeholders."""

from __future__ import annotations

import pytest

from ndjson_pipeline.resources import ResourceNames
from tests.infra import hcl
from tools.iam_policies import POLICIES, TEMPLATES, PolicyTemplateError, local_variables, placeholders, render

IAM_MODULE = hcl.INFRA / "modules" / "iam"


def _terraform_policy_vars() -> dict:
    return hcl.blocks(hcl.module_doc(IAM_MODULE), "locals")["policy_vars"]


def test_terraform_renders_every_template_the_local_stack_renders():
    policies = hcl.blocks(hcl.module_doc(IAM_MODULE), "resource", "aws_iam_role_policy")
    rendered = {body["policy"].split("policies/")[1].split('"')[0] for body in policies.values()}
    assert rendered == set(TEMPLATES.values()) == {p.name for p in POLICIES.glob("*.json.tftpl")}


@pytest.mark.parametrize("template", sorted(TEMPLATES.values()))
def test_both_renderers_fill_every_placeholder(template):
    used = placeholders(template)
    assert used <= set(_terraform_policy_vars()), f"{template}: Terraform leaves {used - set(_terraform_policy_vars())}"
    assert used <= set(local_variables(ResourceNames("x-y")))


def test_both_renderers_offer_the_same_variables():
    assert set(local_variables(ResourceNames("x-y"))) == set(_terraform_policy_vars())


def test_local_rendering_uses_the_stack_names():
    names = ResourceNames("t-abc")
    document = render(TEMPLATES["glue-job"], local_variables(names, dataset="clicks"))
    resources = {r for statement in document["Statement"] for r in statement["Resource"]}
    assert f"arn:aws:s3:::{names.lake_bucket}/clicks/*" in resources
    assert not any("${" in r for r in resources)


def test_a_missing_value_names_the_template_and_placeholder():
    variables = local_variables(ResourceNames("x-y"))
    del variables["lake_bucket_arn"]
    with pytest.raises(PolicyTemplateError, match=r"glue-job\.json\.tftpl.*lake_bucket_arn"):
        render(TEMPLATES["glue-job"], variables)


def test_both_roles_take_the_optional_permissions_boundary():
    roles = hcl.blocks(hcl.module_doc(IAM_MODULE), "resource", "aws_iam_role")
    assert {name: role.get("permissions_boundary") for name, role in roles.items()} == {
        "mwaa": "${var.permissions_boundary_arn}",
        "glue": "${var.permissions_boundary_arn}",
    }
    variable = hcl.blocks(hcl.module_doc(IAM_MODULE), "variable")["permissions_boundary_arn"]
    assert variable["default"] is None
    assert "policy/" in variable["validation"][0]["condition"]
    call = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "module")["iam"]
    assert call["permissions_boundary_arn"] == "${var.permissions_boundary_arn}"
