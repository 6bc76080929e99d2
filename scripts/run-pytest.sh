#!/usr/bin/env bash
# pytest with -ra, then a final block: how many tests were skipped and why
# (one line per reason, from pytest's own "SKIPPED [N] where: reason" summary
# lines), so that a skip is never silent. pytest's exit code is passed
# through unchanged: 5 ("no tests collected") is a failure like any other.
# scripts/test.sh runs the suite through this; arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp "${TMPDIR:-/tmp}/kctl-pytest.XXXXXX")
trap 'rm -f "$out"' EXIT
.venv/bin/pytest -p no:cacheprovider -q -ra "$@" | tee "$out"
rc=${PIPESTATUS[0]}
awk '
/^SKIPPED \[[0-9]+\] / {
    n = substr($2, 2, length($2) - 2) + 0
    total += n
    line = $0
    sub(/^SKIPPED \[[0-9]+\] /, "", line)
    reasons[++k] = sprintf("%6d  %s", n, line)
}
END {
    printf "\n==== skipped: %d test(s)%s ====\n", total, (total ? ", why:" : "")
    for (i = 1; i <= k; i++) print reasons[i]
}' "$out"
exit "$rc"
