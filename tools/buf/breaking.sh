#!/bin/sh
# `buf breaking` of the contract against its committed baseline, tools/buf/baseline.binpb (a
# `buf build` image of the last accepted contract). Comparing with a file, not with a commit
# such as HEAD~1, sees a break made anywhere in a submission of several commits.
#   sh tools/buf/breaking.sh [PROTOS_DIR]     check (default: protos/)
#   sh tools/buf/breaking.sh --update         rebuild the baseline from protos/ (make buf-baseline);
#                                             refused if that hides a break, unless ALLOW_BREAKING=1
set -eu
root="$(cd "$(dirname "$0")/../.." && pwd)"
buf="$root/tools/buf/node_modules/.bin/buf"
baseline="$root/tools/buf/baseline.binpb"

if [ "${1:-}" = "--update" ]; then
  if [ -e "$baseline" ] && ! (cd "$root/protos" && "$buf" breaking --against "$baseline"); then
    if [ "${ALLOW_BREAKING:-}" != "1" ]; then
      echo "buf-baseline: refused: the protos break the baseline (above); a deliberate break is" \
        "ALLOW_BREAKING=1 make buf-baseline" >&2
      exit 1
    fi
    echo "buf-baseline: accepting the breaking change above (ALLOW_BREAKING=1)"
  fi
  (cd "$root/protos" && "$buf" build --exclude-source-info -o "$baseline")
  echo "buf-baseline: tools/buf/baseline.binpb rebuilt from protos/ (commit it)"
  exit 0
fi

protos="${1:-$root/protos}"
if [ ! -e "$baseline" ]; then
  echo "buf breaking: no baseline at tools/buf/baseline.binpb (make buf-baseline, then commit it)" >&2
  exit 1
fi
(cd "$protos" && "$buf" breaking --against "$baseline")
echo "buf breaking: no breaking change against tools/buf/baseline.binpb"
