#!/bin/sh
# `buf breaking` of protos/ against the previous commit: in CI, a fresh clone of main whose last
# commit is the submission, HEAD~1 is the previous main. BUF_AGAINST=<git ref> compares with
# another commit (e.g. origin/main on a branch). Skipped, saying why, where there is no such
# commit (first commit, shallow clone) or it has no protos yet.
set -eu
cd "$(dirname "$0")/../.."
ref="${BUF_AGAINST:-HEAD~1}"
buf="$(pwd)/tools/buf/node_modules/.bin/buf"

if ! git rev-parse --verify -q "$ref^{commit}" >/dev/null 2>&1; then
  echo "buf breaking: skipped: there is no $ref to compare with (first commit or shallow clone)"
  exit 0
fi
if ! git cat-file -e "$ref:protos/wasessions" 2>/dev/null; then
  echo "buf breaking: skipped: $ref has no protos/wasessions yet"
  exit 0
fi
base="$(mktemp -d)"
trap 'rm -rf "$base"' EXIT
git archive "$ref" protos | tar -x -C "$base"
(cd protos && "$buf" breaking --against "$base/protos")
echo "buf breaking: no breaking change against $ref ($(git rev-parse --short "$ref"))"
