#!/usr/bin/env bash
# Port-forward the lab's services from a cluster to localhost until Ctrl-C:
#   proxy tenant API  -> http://127.0.0.1:8080   (svc/prometheus-multi-tenant-proxy:8080)
#   proxy admin       -> http://127.0.0.1:9091   (/metrics, /health, /ready, /debug/*)
#   infra Prometheus  -> http://127.0.0.1:9090   (svc/prometheus-infra:9090)
#   Grafana           -> http://127.0.0.1:3000   (svc/grafana:3000)
#
# Usage: scripts/port-forward.sh [--context CTX] [--namespace NS] [--address ADDR] [--only LIST]
#   --context CTX     kubectl context (default: the current one)
#   --namespace NS    namespace of the proxy and the lab (default: monitoring)
#   --address ADDR    local address to bind (default: 127.0.0.1)
#   --only LIST       comma-separated subset of: proxy,admin,prometheus,grafana
#   -h, --help        this help
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

context=""
namespace=monitoring
address=127.0.0.1
only=proxy,admin,prometheus,grafana
while [[ $# -gt 0 ]]; do
  case "$1" in
    --context) context=${2:?--context needs a value}; shift 2 ;;
    --namespace|-n) namespace=${2:?--namespace needs a value}; shift 2 ;;
    --address) address=${2:?--address needs a value}; shift 2 ;;
    --only) only=${2:?--only needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v kubectl >/dev/null || { echo "kubectl not found on PATH" >&2; exit 1; }
kc=(kubectl)
[[ -n "$context" ]] && kc+=(--context "$context")
kc+=(--namespace "$namespace")

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

forward() { # name target local:remote url
  local name=$1 target=$2 ports=$3 url=$4
  if ! "${kc[@]}" get "$target" >/dev/null 2>&1; then
    echo "skip  $name: $target not found in namespace $namespace"
    return 0
  fi
  "${kc[@]}" port-forward --address "$address" "$target" "$ports" >/dev/null 2>&1 &
  pids+=($!)
  echo "ok    $name: $url"
}

IFS=, read -r -a wanted <<<"$only"
for w in "${wanted[@]}"; do
  case "$w" in
    proxy) forward "proxy API" svc/prometheus-multi-tenant-proxy 8080:8080 "http://$address:8080" ;;
    admin) forward "proxy admin" svc/prometheus-multi-tenant-proxy-admin 9091:9091 "http://$address:9091/metrics" ;;
    prometheus) forward "infra Prometheus" svc/prometheus-infra 9090:9090 "http://$address:9090" ;;
    grafana) forward "Grafana" svc/grafana 3000:3000 "http://$address:3000" ;;
    *) echo "unknown service in --only: $w" >&2; exit 2 ;;
  esac
done

if [[ ${#pids[@]} -eq 0 ]]; then
  echo "nothing to forward" >&2
  exit 1
fi
echo "forwarding; Ctrl-C to stop"
# Stop when any forward dies (pod restarted): rerun the script to reconnect.
wait -n "${pids[@]}" || true
echo "a port-forward ended; stopping the others" >&2
