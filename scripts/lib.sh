# shellcheck shell=bash
set -euo pipefail
# Helpers sourced by scripts/*.sh. Every helper installs only what is missing,
# so a second run on the same machine is fast and changes nothing.

# Repo root, whatever the caller's working directory.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

_APT_UPDATED=0

log() {
    printf '%s [%s] %s\n' "$(date '+%H:%M:%S')" "$(basename "${0:-sh}")" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

_apt_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ensure_apt PKG... : install the Debian packages that are not installed yet.
ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        _apt_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq >/dev/null
        _APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

_sha256() {
    sha256sum "$1" | cut -d' ' -f1
}

# ensure_venv : .venv at the repo root, with requirements.txt installed when it changed.
# REQUIREMENTS_FILE overrides the requirements path (for trying the scripts only).
ensure_venv() {
    local venv="$REPO_ROOT/.venv"
    local req="${REQUIREMENTS_FILE:-$REPO_ROOT/requirements.txt}"
    local stamp="$venv/.requirements.sha256"
    [ -f "$req" ] || die "no $req: the Python dependencies are not declared yet, cannot build .venv"
    if [ ! -x "$venv/bin/python" ]; then
        command -v python3 >/dev/null || ensure_apt python3
        # Debian's python3 has no venv/ensurepip without python3-venv.
        if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
            ensure_apt python3-venv
        fi
        log "creating $venv"
        python3 -m venv "$venv"
        rm -f "$stamp"
    fi
    local want
    want="$(_sha256 "$req")"
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        log "pip install -r $req"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
        printf '%s\n' "$want" >"$stamp"
    fi
}

# port_open HOST PORT : true when something accepts a TCP connection there.
port_open() {
    # shellcheck disable=SC2016  # $1/$2 expand in the child bash, on purpose
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# wait_port HOST PORT SECONDS [NAME] : wait until the port answers, or fail naming the service.
wait_port() {
    local host="$1" port="$2" secs="$3" name="${4:-service on $1:$2}"
    local deadline=$((SECONDS + secs))
    until port_open "$host" "$port"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "$name did not answer on $host:$port within ${secs}s"
        fi
        sleep 0.2
    done
}

# ensure_node_deps DIR : npm ci in DIR when node_modules is missing or package-lock.json changed.
ensure_node_deps() {
    local dir="$1"
    local lock="$dir/package-lock.json"
    local stamp="$dir/node_modules/.package-lock.sha256"
    [ -f "$lock" ] || die "no $lock"
    command -v npm >/dev/null || die "npm is not installed"
    local want
    want="$(_sha256 "$lock")"
    if [ ! -d "$dir/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        log "npm ci in $dir"
        # Browsers come from Debian (chromium), never from a playwright download.
        (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
        printf '%s\n' "$want" >"$stamp"
    fi
}

# ensure_node : node and npm on PATH (Debian's when missing; a nodesource build ships its own npm).
# The dashboard's tools are pinned to run on Debian 12's Node 18.19+ (static/package.json "engines").
ensure_node() {
    local pkgs=()
    command -v node >/dev/null || pkgs+=(nodejs)
    command -v npm >/dev/null || pkgs+=(npm)
    [ "${#pkgs[@]}" -eq 0 ] || ensure_apt "${pkgs[@]}"
    local version
    version="$(node -p 'process.versions.node')"
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)' ||
        die "node $version is too old for the dashboard's build (needs 18.19 or newer)"
}

# ensure_dashboard DIR : build DIR/dist (npm ci + npm run build) when it is missing or older than
# any source, config or the lockfile, so scripts/run.sh and the browser tests serve the current app.
ensure_dashboard() {
    local dir="$1"
    local built="$dir/dist/index.html"
    if [ -f "$built" ] && [ -z "$(find "$dir/src" "$dir/index.html" "$dir/package.json" "$dir/package-lock.json" \
        "$dir/vite.config.ts" "$dir/tsconfig.json" -newer "$built" -print -quit)" ]; then
        return 0
    fi
    ensure_node
    ensure_node_deps "$dir"
    log "building the dashboard in $dir (npm run build)"
    (cd "$dir" && npm run build --silent) || die "the dashboard's build failed (cd $dir && npm run build)"
}
