#!/usr/bin/env bash
# Render every kustomization of the repository with kubectl's built-in kustomize (and each
# Component through a throw-away kustomization); exit 1 on the first one that fails.
#   scripts/render-all.sh [--quiet]
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=false
case "${1:-}" in
  -q|--quiet) quiet=true ;;
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1" >&2; exit 2 ;;
esac

kubectl=${KUBECTL:-kubectl}
failed=0
render() {
  local dir=$1 out
  if out=$("$kubectl" kustomize "$dir" 2>&1); then
    $quiet || printf 'ok    %-45s %3d objects\n' "$dir" "$(grep -c '^kind:' <<<"$out")"
  else
    printf 'FAIL  %s\n%s\n' "$dir" "$out" >&2
    failed=1
  fi
}

while IFS= read -r k; do
  dir=$(dirname "$k")
  if grep -q '^kind: Component' "$k"; then
    tmp=$(mktemp -d "$dir/../.render-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: render-check\ncomponents:\n  - ../%s\n' "$(basename "$dir")" >"$tmp/kustomization.yaml"
    if out=$("$kubectl" kustomize "$tmp" 2>&1); then
      $quiet || printf 'ok    %-45s %3d objects (component)\n' "$dir" "$(grep -c '^kind:' <<<"$out")"
    else
      printf 'FAIL  %s (component)\n%s\n' "$dir" "$out" >&2
      failed=1
    fi
    rm -rf "$tmp"
    trap - EXIT
  else
    render "$dir"
  fi
done < <(find . -name kustomization.yaml -not -path './target/*' -not -path './.git/*' | sed 's|^\./||' | sort)

exit "$failed"
