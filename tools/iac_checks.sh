#!/usr/bin/env bash
# Offline checks of the Terraform in infra/: formatting and checkov's policies.
# checkov lives in its own venv (.venv-iac) because its pins clash with Airflow's;
# the venv is rebuilt only when requirements-iac.txt changes (stamp = its hash).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-iac
STAMP="$VENV/.installed-$(sha256sum requirements-iac.txt | cut -c1-16)"

if [[ ! -f "$STAMP" ]]; then
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q uv==0.12.3
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -r requirements-iac.txt
  rm -f "$VENV"/.installed-* && touch "$STAMP"
fi

# No ~/.terraformrc here: an empty CLI config keeps terraform from warning about it.
export TF_CLI_CONFIG_FILE="${TF_CLI_CONFIG_FILE:-/dev/null}"

status=0
echo "terraform fmt -check -recursive infra"
terraform fmt -check -recursive -diff infra || status=1

echo "checkov -d infra"
# --skip-download: no network; the policies shipped in the package are the ones run.
"$VENV/bin/checkov" -d infra --framework terraform --skip-download --compact --quiet || status=1

# checkov does not evaluate templatefile(): check the IAM policy templates rendered, as CloudFormation.
echo "checkov on the rendered IAM policies (infra/policies)"
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
PYTHONPATH=include:. "$VENV/bin/python" -m tools.iam_policies cloudformation >"$rendered/iam-policies.json"
"$VENV/bin/checkov" -f "$rendered/iam-policies.json" --framework cloudformation --skip-download --compact --quiet || status=1

# terraform validate and the plan-time tests (*.tftest.hcl, on a mocked provider) need the AWS
# provider's binary, which cannot be downloaded here: they run when a local provider mirror exists
# (TF_PLUGIN_DIR, by default /opt/tf-plugins), and say so when they cannot.
plugins="${TF_PLUGIN_DIR:-/opt/tf-plugins}"
if [[ -d "$plugins" ]]; then
  workdir="$(mktemp -d)"
  trap 'rm -rf "$rendered" "$workdir"' EXIT
  cp -r infra include "$workdir/"
  # A mirror holding no provider version the configuration accepts cannot check it: say so, as without a mirror.
  init_from_mirror() {
    local out
    if out="$(terraform init -backend=false -input=false -no-color -plugin-dir="$plugins" 2>&1)"; then
      return 0
    fi
    if grep -q "no available releases match" <<<"$out"; then
      echo "SKIPPED: the mirror at $plugins has no aws provider version that $1 accepts"
      return 2
    fi
    echo "$out"
    return 1
  }
  echo "terraform validate infra/envs/prod (providers from $plugins)"
  (cd "$workdir/infra/envs/prod" && init_from_mirror infra/envs/prod && terraform validate -no-color) || {
    [[ $? -eq 2 ]] || status=1
  }
  for tests in infra/modules/*/tests; do
    [[ -d "$tests" ]] || continue
    module="$(dirname "$tests")"
    echo "terraform test $module"
    (cd "$workdir/$module" && init_from_mirror "$module" && terraform test -no-color) || {
      [[ $? -eq 2 ]] || status=1
    }
  done
else
  echo "terraform validate and terraform test: SKIPPED, no provider mirror at $plugins (set TF_PLUGIN_DIR)"
fi

exit "$status"
