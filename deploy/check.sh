#!/usr/bin/env bash
# Checks everything under deploy/ offline and exits non-zero on any problem; a missing tool is a
# failure, never a skip:
#   1. renders the kustomize base and the production overlay (`kubectl kustomize`);
#   2. tools/validate.mjs: every rendered object against the Kubernetes, KEDA and
#      prometheus-operator schemas (npm's kubernetes-models), unknown fields included, and the
#      invariants deploy/README.md promises (every variable of `rythmiq ROLE --help` set from a
#      ConfigMap or a Secret, secrets only from Secrets, the worker's grace period above its
#      shutdown timeout, the hardening, the probes, the autoscaler's trigger);
#   3. compose.yaml against the Compose Specification's JSON schema (check-jsonschema's copy),
#      and its services against the roles' variables;
#   4. promtool on the Compose stack's Prometheus configuration; shell syntax of the scripts;
#   5. the self-test: broken copies of the manifests and of the Compose file must be rejected.
# `scripts/setup.sh --test` installs the tools: kubectl (on the machine image), the npm packages
# into target/deploy-node (pinned by tools/package-lock.json), check-jsonschema, promtool.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "deploy/check.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 not found; run scripts/setup.sh --test"; }

# kubectl: the machine's, else the pinned one scripts/setup.sh installs under target/.
PATH="$PATH:$PWD/target/deploy-tools/bin"
need kubectl
need node
need check-jsonschema
need promtool
node_dir=target/deploy-node
[ -d "$node_dir/node_modules/kubernetes-models" ] || fail "$node_dir has no npm packages; run scripts/setup.sh --test"
cmp -s deploy/tools/package-lock.json "$node_dir/package-lock.json" \
  || fail "$node_dir is not installed from deploy/tools/package-lock.json; run scripts/setup.sh --test"

# The roles' variables, as the binary documents them (`[env: NAME]` in --help).
bin="${RYTHMIQ_BIN:-target/debug/rythmiq}"
if [ ! -x "$bin" ]; then
  cargo build --quiet --locked --bin rythmiq
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
help_args=()
for role in api worker migrate; do
  "$bin" "$role" --help | grep -oE '\[env: [A-Z0-9_]+' | sed 's/\[env: //' | sort -u >"$work/$role.env"
  [ -s "$work/$role.env" ] || fail "rythmiq $role --help lists no variables"
  help_args+=(--help-env "$role=$work/$role.env")
done

# 1. Render.
kubectl kustomize deploy/k8s/base >"$work/base.yaml"
kubectl kustomize deploy/k8s/overlays/production >"$work/production.yaml"

# 2 and 3. Schemas and invariants (the validator runs beside its packages).
cp deploy/tools/validate.mjs "$node_dir/validate.mjs"
node "$node_dir/validate.mjs" "${help_args[@]}" --compose deploy/compose.yaml \
  "$work/base.yaml" "$work/production.yaml"
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

# 4. The Compose stack's Prometheus, with the alert rules where the container mounts them.
mkdir -p "$work/prometheus/alerts"
cp grafana/alerts/rythmiq.rules.yml "$work/prometheus/alerts/"
sed 's|/etc/prometheus/alerts/|alerts/|' deploy/compose/prometheus.yml >"$work/prometheus/prometheus.yml"
promtool check config "$work/prometheus/prometheus.yml"
for script in deploy/check.sh deploy/k8s/rollout.sh deploy/healthcheck.sh; do
  bash -n "$script" || fail "$script: syntax error"
done

# 5. The checks can fail: each deliberate break must be caught.
node "$node_dir/validate.mjs" "${help_args[@]}" --compose deploy/compose.yaml --selftest "$work/base.yaml"
sed 's/^services:$/servics:/' deploy/compose.yaml >"$work/broken-compose.yaml"
if check-jsonschema --builtin-schema vendor.compose-spec "$work/broken-compose.yaml" >/dev/null 2>&1; then
  fail "self-test: the Compose schema accepted a misspelt top-level key"
fi
sed 's/^    stop_grace_period: 45s$/    stop_grace_periods: 45s/' deploy/compose.yaml >"$work/broken-compose.yaml"
cmp -s deploy/compose.yaml "$work/broken-compose.yaml" && fail "self-test: could not break compose.yaml"
if check-jsonschema --builtin-schema vendor.compose-spec "$work/broken-compose.yaml" >/dev/null 2>&1; then
  fail "self-test: the Compose schema accepted a misspelt service key"
fi
echo "self-test: the Compose schema rejected both broken copies"
echo "deploy/check.sh: all checks passed"
