#!/usr/bin/env bash
# Start, stop or show the backing services the tests use, all on loopback:
#   MariaDB 127.0.0.1:3306 (root, empty password), gearmand 127.0.0.1:4730, memcached 127.0.0.1:11211.
# A service whose port already answers is left alone; `stop` stops only what `start` started
# (it keeps pid files in $TEAM03_RUN_DIR, default /tmp/team03-services).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN_DIR="${TEAM03_RUN_DIR:-/tmp/team03-services}"
HOST=127.0.0.1
MARIADB_PORT=3306
GEARMAN_PORT=4730
MEMCACHED_PORT=11211
# gearmand hands a job to a worker again when the worker's connection drops while it holds the job
# (kill -9, OOM, a lost host), and by default does so forever: one job that kills its worker would
# take down every worker in turn. 3 = at most three runs (measured: --job-retries=N runs a job at most
# N times), so a worker lost in a deploy costs no wait, while a poisonous job is dropped after two
# victims. The attempt rows and the reaper (lease expiry, JOB_MAX_ATTEMPTS) are the real safety net:
# they re-submit or fail for good what gearmand dropped. tests/services.py `Gearmand` uses the same value.
GEARMAN_JOB_RETRIES=3

usage() {
    echo "usage: $0 start|stop|status" >&2
    exit 2
}

# ---- MariaDB ---------------------------------------------------------------

mariadb_start() {
    if port_open "$HOST" "$MARIADB_PORT"; then
        log "mariadb: already answering on $HOST:$MARIADB_PORT, left alone"
    else
        [ -x /usr/sbin/mariadbd ] || ensure_apt mariadb-server
        # Debian's postinst normally creates the data dir; a half-installed one may not have.
        if [ ! -d /var/lib/mysql/mysql ]; then
            log "mariadb: initialising /var/lib/mysql"
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        fi
        install -d -o mysql -g mysql /run/mysqld
        log "mariadb: starting mariadbd"
        start-stop-daemon --start --oknodo --background \
            --make-pidfile --pidfile "$RUN_DIR/mariadb.pid" \
            --exec /usr/sbin/mariadbd -- --user=mysql --bind-address="$HOST" --port="$MARIADB_PORT"
    fi
    wait_port "$HOST" "$MARIADB_PORT" 60 mariadb
    mariadb_fix_root
}

mariadb_root_tcp_ok() {
    mysql --protocol=TCP -h"$HOST" -P"$MARIADB_PORT" -uroot -e 'select 1' >/dev/null 2>&1
}

# The tests log in as root with an empty password over TCP. Debian's default root is
# unix_socket only; keep the socket login and add the empty password next to it.
mariadb_fix_root() {
    local i
    # The port can answer a moment before the server accepts logins.
    for i in 1 2 3 4 5; do
        mariadb_root_tcp_ok && return 0
        sleep "0.$i"
    done
    log "mariadb: root cannot log in over TCP with an empty password; fixing over the unix socket"
    mysql -uroot <<'SQL' || die "mariadb: could not fix root's login (is root unix_socket only and are we not OS root?)"
ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
    mariadb_root_tcp_ok || die "mariadb: root still cannot log in on $HOST:$MARIADB_PORT"
    log "mariadb: root now logs in over TCP with an empty password"
}

# ---- gearmand / memcached --------------------------------------------------

gearmand_start() {
    if port_open "$HOST" "$GEARMAN_PORT"; then
        log "gearmand: already answering on $HOST:$GEARMAN_PORT, left alone"
    else
        command -v gearmand >/dev/null || ensure_apt gearman-job-server
        log "gearmand: starting (in-memory queue)"
        # queue-type builtin keeps jobs in memory only: nothing survives a restart, by design.
        gearmand --listen="$HOST" --port="$GEARMAN_PORT" --daemon --queue-type=builtin \
            --job-retries="$GEARMAN_JOB_RETRIES" \
            --pid-file="$RUN_DIR/gearmand.pid" --log-file="$RUN_DIR/gearmand.log" --verbose=WARNING
    fi
    wait_port "$HOST" "$GEARMAN_PORT" 30 gearmand
}

memcached_start() {
    if port_open "$HOST" "$MEMCACHED_PORT"; then
        log "memcached: already answering on $HOST:$MEMCACHED_PORT, left alone"
    else
        command -v memcached >/dev/null || ensure_apt memcached
        log "memcached: starting"
        # memcached writes its pid file (via a .tmp + rename) after dropping to the memcache
        # user, so it needs a directory of its own that that user can write.
        install -d -o memcache -m 755 "$RUN_DIR/memcached"
        memcached -d -l "$HOST" -p "$MEMCACHED_PORT" -U 0 -u memcache -m 64 -P "$RUN_DIR/memcached/memcached.pid"
    fi
    wait_port "$HOST" "$MEMCACHED_PORT" 30 memcached
}

# ---- stop / status ---------------------------------------------------------

pid_file() {
    if [ "$1" = memcached ]; then echo "$RUN_DIR/memcached/memcached.pid"; else echo "$RUN_DIR/$1.pid"; fi
}

pid_of() {
    local f pid
    f="$(pid_file "$1")"
    [ -f "$f" ] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        return 1
    fi
    echo "$pid"
}

stop_one() {
    local name="$1" pid i
    if ! pid="$(pid_of "$name")"; then
        rm -f "$(pid_file "$name")"
        log "$name: not started by this script, left alone"
        return 0
    fi
    log "$name: stopping pid $pid"
    kill "$pid"
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid ignored TERM for 30s, killing"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$name")"
}

status_one() {
    local name="$1" port="$2" pid state
    if port_open "$HOST" "$port"; then state="up"; else state="DOWN"; fi
    if pid="$(pid_of "$name")"; then
        printf '%-10s %-5s %s:%s  started by services.sh (pid %s)\n' "$name" "$state" "$HOST" "$port" "$pid"
    else
        printf '%-10s %-5s %s:%s  not started by services.sh\n' "$name" "$state" "$HOST" "$port"
    fi
}

main() {
    [ "$#" -eq 1 ] || usage
    mkdir -p "$RUN_DIR"
    case "$1" in
        start)
            mariadb_start
            gearmand_start
            memcached_start
            log "all services up"
            ;;
        stop)
            stop_one memcached
            stop_one gearmand
            stop_one mariadb
            ;;
        status)
            status_one mariadb "$MARIADB_PORT"
            status_one gearmand "$GEARMAN_PORT"
            status_one memcached "$MEMCACHED_PORT"
            ;;
        *) usage ;;
    esac
}

main "$@"
