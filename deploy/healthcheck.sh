#!/bin/sh
# The image's HEALTHCHECK (Docker and Compose; Kubernetes uses the manifests' probes instead):
# GET /healthz on the port of the role this container runs, the API's RYTHMIQ_LISTEN or the
# worker's RYTHMIQ_METRICS_LISTEN. `rythmiq migrate` is a one-shot and is always healthy.
set -eu
case " $(tr '\0' ' ' </proc/1/cmdline)" in
  *" api "*) addr="${RYTHMIQ_LISTEN:-0.0.0.0:8080}" ;;
  *" worker "*) addr="${RYTHMIQ_METRICS_LISTEN:-0.0.0.0:9100}" ;;
  *) exit 0 ;;
esac
exec curl --fail --silent --show-error --output /dev/null --max-time 3 \
  "http://127.0.0.1:${addr##*:}/healthz"
