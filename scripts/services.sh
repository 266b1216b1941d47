#!/usr/bin/env bash
# Start, stop or show the backing services the tests use, all on loopback:
#   MariaDB 127.0.0.1:3306 (root, empty password), gearmand 127.0.0.1:4730, memcached 127.0.0.1:11211,
#   ceph: an S3 gateway (RADOS Gateway) on 127.0.0.1:7480 over a one-node, in-memory Ceph cluster,
#   with a test user whose keys are RGW_ACCESS_KEY / RGW_SECRET_KEY below.
# A service whose port already answers is left alone; `stop` stops only what `start` started
# (it keeps pid files in $TEAM03_RUN_DIR, default /tmp/team03-services). Without service names,
# all of them; `start ceph` starts the gateway alone (the S3 tests' fixture does when it is down).
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
CEPH_MON_PORT=6789
RGW_PORT=7480
# Fixed keys of the gateway's one user: this cluster is for tests and development only, on loopback,
# in memory. tests/harness/services.py and scripts/test.sh use the same ones.
RGW_USER=team03-test
RGW_ACCESS_KEY=team03-test-access-key
RGW_SECRET_KEY=team03-test-secret-key
CEPH_DIR="$RUN_DIR/ceph"
CEPH_CONF="$CEPH_DIR/ceph.conf"
SERVICES=(mariadb gearmand memcached ceph)

usage() {
    echo "usage: $0 start|stop|status [${SERVICES[*]}]" >&2
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

# ---- ceph: the S3 gateway ---------------------------------------------------
# One monitor, one OSD on memstore (objects live in the OSD's memory: a restart starts empty), and
# radosgw's beast frontend, all on loopback. cephx is off (the S3 user's keys still sign every
# request: RGW checks S3 signatures itself). With one OSD every pool has one copy, so size 1 must be
# allowed and its warning silenced; small pg counts keep the OSD's memory down, and without a manager
# daemon nothing autoscales them. A fresh cluster each start, as the data would not survive anyway.

ceph_write_conf() {
    cat >"$CEPH_CONF" <<EOF
[global]
fsid = $1
mon_host = v1:$HOST:$CEPH_MON_PORT
mon_initial_members = a
public_addr = $HOST
cluster_addr = $HOST
ms_bind_msgr2 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $CEPH_DIR/run
pid_file = $CEPH_DIR/run/\$name.pid
admin_socket = $CEPH_DIR/run/\$name.asok
log_file = $CEPH_DIR/log/\$name.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
# A nearly full /tmp must not stop the monitor (it shuts down under 5% free by default).
mon_data_avail_crit = 0

[mon]
mon_data = $CEPH_DIR/mon/\$cluster-\$id
# The monitor batches map changes for a second by default; radosgw's first start makes a dozen (its
# pools), one after the other: 8 s of its 11 s start. One monitor has no one to batch for.
paxos_propose_interval = 0.05

[osd]
osd_data = $CEPH_DIR/osd/\$cluster-\$id
osd_objectstore = memstore
# The capacity the OSD reports; memory is only used by what is stored.
memstore_device_bytes = 2147483648
# The OSD's own crush and device-class updates at start race its monitor client: sent before it has
# the monitor map, they carry a zero fsid, are refused ("wrong fsid") and the OSD exits (1 start in 3).
# services.sh places it in the crush map itself instead.
osd_crush_update_on_start = false
osd_class_update_on_start = false

[client.rgw.a]
rgw_frontends = beast endpoint=$HOST:$RGW_PORT
rgw_data = $CEPH_DIR/rgw
EOF
}

ceph_ours() {
    [ -f "$CEPH_CONF" ] && pid_of ceph-rgw >/dev/null
}

ceph_start() {
    if port_open "$HOST" "$RGW_PORT"; then
        log "ceph: a gateway already answers on $HOST:$RGW_PORT, left alone"
        if ceph_ours; then ceph_retry ceph_user || die "ceph: could not create the S3 user $RGW_USER"; fi
        return 0
    fi
    command -v radosgw >/dev/null && command -v ceph-osd >/dev/null && command -v ceph-mon >/dev/null ||
        ensure_apt radosgw ceph-mon ceph-osd
    # What is left of an earlier cluster of ours (a gateway that died, say) goes: start afresh.
    ceph_stop >/dev/null 2>&1 || true
    ! port_open "$HOST" "$CEPH_MON_PORT" || die "ceph: something else listens on the monitor's port $HOST:$CEPH_MON_PORT"
    local started=$SECONDS fsid osd_uuid
    rm -rf "$CEPH_DIR"
    mkdir -p "$CEPH_DIR"/{run,log,mon/ceph-a,osd/ceph-0,rgw}
    fsid="$(cat /proc/sys/kernel/random/uuid)"
    osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
    ceph_write_conf "$fsid"
    log "ceph: starting a monitor, an OSD (memstore) and radosgw in $CEPH_DIR"
    monmaptool --create --addv a "[v1:$HOST:$CEPH_MON_PORT]" --fsid "$fsid" "$CEPH_DIR/monmap" >/dev/null
    ceph-mon -c "$CEPH_CONF" -i a --mkfs --monmap "$CEPH_DIR/monmap" && ceph-mon -c "$CEPH_CONF" -i a ||
        die "ceph: the monitor did not start (see $CEPH_DIR/log/mon.a.log)"
    ceph_retry timeout 20 ceph -c "$CEPH_CONF" osd new "$osd_uuid" &&
        ceph_retry timeout 20 ceph -c "$CEPH_CONF" osd crush add osd.0 1 root=default ||
        die "ceph: the monitor did not register an OSD (see $CEPH_DIR/log)"
    # ceph-osd prints notes ("Falling back to public interface") on stderr: keep them with its log.
    ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>>"$CEPH_DIR/log/osd.0.stderr" &&
        ceph-osd -c "$CEPH_CONF" -i 0 2>>"$CEPH_DIR/log/osd.0.stderr" &&
        ceph_retry ceph_osd_up ||
        die "ceph: the OSD did not come up (see $CEPH_DIR/log/osd.0.*)"
    ceph_start_rgw || die "ceph: radosgw did not come up on $HOST:$RGW_PORT (see $CEPH_DIR/log)"
    ceph_retry ceph_user || die "ceph: could not create the S3 user $RGW_USER (see $CEPH_DIR/log)"
    log "ceph: gateway up on $HOST:$RGW_PORT in $((SECONDS - started))s"
}

# ceph_retry CMD... : run a cluster client command, again every 0.5 s for up to 30 s while it fails.
# With cephx off, a new client can send its first command before it has the monitor map: it goes out
# with a zero fsid and the monitor refuses it (EPERM, "wrong fsid"), mostly in a new monitor's first
# second. Seen in 1 start of 3 without this.
ceph_retry() {
    local deadline=$((SECONDS + 30))
    until "$@" >/dev/null 2>>"$CEPH_DIR/log/commands.stderr"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

ceph_osd_up() {
    timeout 20 ceph -c "$CEPH_CONF" osd stat 2>&1 | grep -q ' 1 up'
}

# radosgw creates its pools (monitor commands, the race above) on its first start, then opens its
# port; one that exits on the way is started again.
ceph_start_rgw() {
    local try since
    for try in 1 2 3; do
        radosgw -c "$CEPH_CONF" -n client.rgw.a || return 1
        since=$SECONDS
        while [ "$SECONDS" -lt $((since + 90)) ]; do
            port_open "$HOST" "$RGW_PORT" && return 0
            # Its pid file appears once it has forked: give it a moment before calling it dead.
            if [ "$SECONDS" -ge $((since + 2)) ] && ! pid_of ceph-rgw >/dev/null; then
                log "ceph: radosgw exited while starting (try $try)"
                break
            fi
            sleep 0.2
        done
    done
    return 1
}

ceph_user() {
    local admin=(timeout 20 radosgw-admin -c "$CEPH_CONF")
    "${admin[@]}" user info --uid="$RGW_USER" >/dev/null 2>&1 ||
        "${admin[@]}" user create --uid="$RGW_USER" --display-name="$RGW_USER" \
            --access-key="$RGW_ACCESS_KEY" --secret-key="$RGW_SECRET_KEY"
}

ceph_stop() {
    # The gateway first, the monitor last: an OSD whose monitor is gone waits for it before exiting.
    stop_one ceph-rgw
    stop_one ceph-osd
    stop_one ceph-mon
}

# ---- stop / status ---------------------------------------------------------

pid_file() {
    case "$1" in
        memcached) echo "$RUN_DIR/memcached/memcached.pid" ;;
        # The ceph daemons write their own (pid_file in ceph.conf).
        ceph-rgw) echo "$CEPH_DIR/run/client.rgw.a.pid" ;;
        ceph-osd) echo "$CEPH_DIR/run/osd.0.pid" ;;
        ceph-mon) echo "$CEPH_DIR/run/mon.a.pid" ;;
        *) echo "$RUN_DIR/$1.pid" ;;
    esac
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

start_one() {
    case "$1" in
        mariadb) mariadb_start ;;
        gearmand) gearmand_start ;;
        memcached) memcached_start ;;
        ceph) ceph_start ;;
    esac
}

status_of() {
    case "$1" in
        mariadb) status_one mariadb "$MARIADB_PORT" ;;
        gearmand) status_one gearmand "$GEARMAN_PORT" ;;
        memcached) status_one memcached "$MEMCACHED_PORT" ;;
        ceph) status_one ceph-rgw "$RGW_PORT" ;;
    esac
}

main() {
    [ "$#" -ge 1 ] || usage
    local action="$1" name i names=()
    shift
    for name in "$@"; do
        [[ " ${SERVICES[*]} " == *" $name "* ]] || usage
    done
    if [ "$#" -gt 0 ]; then names=("$@"); else names=("${SERVICES[@]}"); fi
    mkdir -p "$RUN_DIR"
    case "$action" in
        start)
            for name in "${names[@]}"; do start_one "$name"; done
            log "up: ${names[*]}"
            ;;
        stop)
            # In the reverse order of start.
            for ((i = ${#names[@]} - 1; i >= 0; i--)); do
                if [ "${names[$i]}" = ceph ]; then ceph_stop; else stop_one "${names[$i]}"; fi
            done
            ;;
        status)
            for name in "${names[@]}"; do status_of "$name"; done
            ;;
        *) usage ;;
    esac
}

main "$@"
