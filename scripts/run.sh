#!/usr/bin/env bash
# Set up what is missing on a fresh Debian machine (as root), then run the dev stack:
# the web app plus a local job runner on SQLite, on 127.0.0.1:5000 by default, and the dashboard
# (static/, built when missing or stale) at /. Extra arguments go to dev_run.py.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_apt ffmpeg
ensure_venv
ensure_dashboard "$REPO_ROOT/static"
cd "$REPO_ROOT"
[ -f dev_run.py ] || die "no dev_run.py in $REPO_ROOT"
log "starting dev_run.py $*"
exec "$REPO_ROOT/.venv/bin/python" dev_run.py "$@"
