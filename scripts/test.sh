#!/usr/bin/env bash
# Install what is missing on a fresh Debian machine (as root), start the real services on
# loopback, then run lint and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# radosgw, ceph-mon, ceph-osd: the S3 gateway the object-store tests use (scripts/services.sh ceph).
pkgs=(ffmpeg gearman-job-server memcached chromium nginx-light radosgw ceph-mon ceph-osd)
[ -x /usr/sbin/mariadbd ] || pkgs+=(mariadb-server)
# Node may come from elsewhere than Debian (a nodesource build ships its own npm): only fill gaps.
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
ensure_apt "${pkgs[@]}"

bash "$REPO_ROOT/scripts/services.sh" start
ensure_venv
ensure_node_deps "$REPO_ROOT/tests/e2e"
# The browser tests drive the built dashboard.
ensure_dashboard "$REPO_ROOT/static"

export TEST_MYSQL_URL="mysql+pymysql://root@127.0.0.1:3306"
export GEARMAN_SERVERS="127.0.0.1:4730"
export MEMCACHED_SERVERS="127.0.0.1:11211"
export CHROMIUM="/usr/bin/chromium"
# scripts/services.sh's gateway and its test user's fixed keys (loopback, in memory, tests only).
export TEST_S3_ENDPOINT_URL="http://127.0.0.1:7480"
export AWS_ACCESS_KEY_ID="team03-test-access-key"
export AWS_SECRET_ACCESS_KEY="team03-test-secret-key"

if [ -x .venv/bin/ruff ]; then
    lint_paths=()
    for d in server tests bench; do
        [ -e "$d" ] && lint_paths+=("$d")
    done
    log "ruff check ${lint_paths[*]}"
    .venv/bin/ruff check "${lint_paths[@]}"
else
    log "ruff is not in .venv: lint skipped"
fi

# The types of server/ (pyproject.toml's [tool.mypy]: strict; its `files` names server/).
log "mypy"
.venv/bin/mypy || die "mypy found type errors in server/ (run .venv/bin/mypy)"

# The dashboard's own checks (fast: no browser): ESLint and its unit tests (vitest), which include
# the check that src/openapi.gen.ts is what server/web/api/openapi.json generates.
ensure_node_deps "$REPO_ROOT/static" # a current dist skips the install its build would have made
log "dashboard: npm run lint && npm test"
(cd "$REPO_ROOT/static" && npm run lint --silent && npm test --silent) || die "the dashboard's lint or unit tests failed (cd static && npm run lint && npm test)"

log "pytest -W error -q --durations=20 $*"
rc=0
.venv/bin/python -m pytest -W error -q --durations=20 "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    log "FAILED: pytest collected no tests (exit 5); a run that tests nothing is not a pass"
    exit 1
fi
exit "$rc"
