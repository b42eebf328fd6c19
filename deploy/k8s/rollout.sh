#!/usr/bin/env bash
# Upgrades the fleet in the one safe order: migrate, then roll out.
#   1. the ConfigMaps and the migrate Job of the new version, and wait for the Job to complete;
#   2. everything else (the API and worker Deployments roll; KEDA and the HPA keep their counts);
#   3. wait for both rollouts.
# A failed migration stops here, with the old version still serving. Usage:
#   deploy/k8s/rollout.sh deploy/k8s/overlays/production
set -euo pipefail
overlay="${1:?usage: rollout.sh OVERLAY_DIR}"
rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
kubectl kustomize "$overlay" >"$rendered"
# The Job's namespace (the overlay's), for the commands that name the Job.
namespace="$(awk '/^kind: Job$/ {job = 1} job && /^  namespace:/ {print $2; exit}' "$rendered")"
ns_args=()
[ -n "$namespace" ] && ns_args=(--namespace "$namespace")

# A Job's pod template cannot change in place: the previous version's Job goes first.
kubectl delete job rythmiq-migrate "${ns_args[@]}" --ignore-not-found --wait
kubectl apply -f "$rendered" \
  --selector 'app.kubernetes.io/component in (config, migrate)'
kubectl wait job/rythmiq-migrate "${ns_args[@]}" --for=condition=complete --timeout=15m

kubectl apply -f "$rendered"
kubectl rollout status deployment/rythmiq-api "${ns_args[@]}" --timeout=15m
kubectl rollout status deployment/rythmiq-worker "${ns_args[@]}" --timeout=15m
