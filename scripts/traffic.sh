#!/usr/bin/env bash
# Demo traffic for the proxy: each round, every tenant runs a few Prometheus API calls
# (instant and range queries, series, labels, label values, metadata), plus a few requests
# that must be refused (no credentials, a wrong tenant). No remote_write. Fills the
# dashboard's read-path and auth panels.
#
# Usage: scripts/traffic.sh [--url URL] [--tenants a,b] [--auth MODE] [--count N] [--seconds S]
#                           [--interval S] [--quiet]
#   --url URL        proxy tenant API (default: http://127.0.0.1:8080, see port-forward.sh)
#   --tenants LIST   comma-separated tenant namespaces (default: team-a,team-b)
#   --auth MODE      kubernetes: a token per tenant from `kubectl create token grafana`
#                      (or $TOKEN_<TENANT>, e.g. TOKEN_TEAM_A), audience
#                      prometheus-multi-tenant-proxy (default)
#                    header: X-Tenant-Namespace: <tenant> (proxy in auth.mode header)
#   --count N        stop after N rounds (default: 10 unless --seconds is given)
#   --seconds S      stop after S seconds
#   --interval S     pause between rounds (default: 1)
#   --quiet          print only the summary
#   -h, --help       this help
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

url=http://127.0.0.1:8080
tenants=team-a,team-b
auth=kubernetes
count=""
seconds=""
interval=1
quiet=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --url) url=${2:?--url needs a value}; shift 2 ;;
    --tenants) tenants=${2:?--tenants needs a value}; shift 2 ;;
    --auth) auth=${2:?--auth needs a value}; shift 2 ;;
    --count) count=${2:?--count needs a value}; shift 2 ;;
    --seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
    --interval) interval=${2:?--interval needs a value}; shift 2 ;;
    --quiet|-q) quiet=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -z "$count" && -z "$seconds" ]] && count=10
for n in ${count:+"$count"} ${seconds:+"$seconds"}; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "--count/--seconds take a whole number, got: $n" >&2; exit 2; }
done
case "$auth" in kubernetes|header) ;; *) echo "--auth: kubernetes or header, got: $auth" >&2; exit 2 ;; esac
command -v curl >/dev/null || { echo "curl not found on PATH" >&2; exit 1; }

IFS=, read -r -a tenant_list <<<"$tenants"
declare -A cred
for t in "${tenant_list[@]}"; do
  if [[ "$auth" == header ]]; then
    cred[$t]="X-Tenant-Namespace: $t"
  else
    var="TOKEN_$(tr '[:lower:]-' '[:upper:]_' <<<"$t")"
    token=${!var:-}
    if [[ -z "$token" ]]; then
      token=$(kubectl -n "$t" create token grafana --audience prometheus-multi-tenant-proxy --duration 1h) ||
        { echo "cannot get a token for $t (set $var or create ServiceAccount $t/grafana)" >&2; exit 1; }
    fi
    cred[$t]="Authorization: Bearer $token"
  fi
done

declare -A codes
total=0
call() { # header path [curl args...]
  local header=$1 path=$2 code
  shift 2
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 ${header:+-H "$header"} "$@" "$url$path") || code=000
  codes[$code]=$(( ${codes[$code]:-0} + 1 ))
  total=$((total + 1))
  $quiet || printf '%s %s\n' "$code" "$path"
}

start=$(date +%s)
round=0
while :; do
  round=$((round + 1))
  now=$(date +%s)
  for t in "${tenant_list[@]}"; do
    h=${cred[$t]}
    call "$h" "/api/v1/query" -G --data-urlencode 'query=sum by (namespace) (rate(container_cpu_usage_seconds_total[5m]))'
    call "$h" "/api/v1/query" -G --data-urlencode 'query=up'
    call "$h" "/api/v1/query_range" -G --data-urlencode 'query=rate(http_requests_total[1m])' \
      --data-urlencode "start=$((now - 600))" --data-urlencode "end=$now" --data-urlencode 'step=30'
    call "$h" "/api/v1/series" -G --data-urlencode 'match[]={__name__=~"kube_pod_.*"}'
    call "$h" "/api/v1/labels"
    call "$h" "/api/v1/label/__name__/values"
    call "$h" "/api/v1/metadata"
  done
  # Refusals the dashboard shows as auth failures: no credentials, a garbage token, and (in
  # header mode) a namespace without a MetricAccess.
  call "" "/api/v1/query" -G --data-urlencode 'query=up'
  if [[ "$auth" == header ]]; then
    call "X-Tenant-Namespace: no-such-tenant" "/api/v1/query" -G --data-urlencode 'query=up'
  else
    call "Authorization: Bearer not-a-token" "/api/v1/query" -G --data-urlencode 'query=up'
  fi

  [[ -n "$count" && "$round" -ge "$count" ]] && break
  [[ -n "$seconds" && $(( $(date +%s) - start )) -ge "$seconds" ]] && break
  sleep "$interval"
done

summary=""
for c in $(printf '%s\n' "${!codes[@]}" | sort); do summary+=" $c=${codes[$c]}"; done
echo "rounds=$round requests=$total codes:$summary"
# 000 means the proxy was unreachable: fail so scripts notice.
[[ -z "${codes[000]:-}" ]]
