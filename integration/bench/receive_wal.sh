#!/usr/bin/env bash
# Benchmark: barman-receive-wal against pg_receivewal (PostgreSQL 15), side by side, one run.
#
#  (a) catch-up: drain a slot backlog (SIZE_MB, default 2048; QUICK=1 gives 256) with
#      -E <endpos>: MB/s, CPU seconds (user+sys), peak RSS (/usr/bin/time -v), once per
#      compression in COMPRESSIONS (default "none lz4 gzip": -Z METHOD for both tools).
#  (b) --synchronous as the one synchronous standby under pgbench for SYNC_SECS (default 20):
#      pgbench tps and flush lag (pg_current_wal_lsn() - flush_lsn, sampled every 100 ms)
#      p50/p95 in bytes; each tool gets its own run with the same load.
#
# Runs as root; a throwaway cluster on a Unix socket in a temp dir (TCP on 127.0.0.1 only),
# removed on exit. SYNC_SECS=0 skips (b). Both streamers fsync (no --no-sync); the server runs with fsync=off so
# that generating the backlog is not the bottleneck.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
SIZE_MB=${SIZE_MB:-2048}
[[ ${QUICK:-0} == 1 ]] && SIZE_MB=256
SYNC_SECS=${SYNC_SECS:-20}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

[[ $(id -u) == 0 ]] || { echo "receive_wal.sh: run as root" >&2; exit 1; }
[[ -x $PG_BIN/postgres ]] || { echo "receive_wal.sh: no PostgreSQL 15 in $PG_BIN" >&2; exit 1; }
if [[ ! -x /usr/bin/time ]]; then
    apt-get install -y -qq time >/dev/null
fi

echo "building barman-receive-wal (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p barman-receive-wal)
OURS=${CARGO_TARGET_DIR:-$ROOT/target}/release/barman-receive-wal
THEIRS=$PG_BIN/pg_receivewal

WORK=$(mktemp -d /tmp/receive-wal-bench.XXXXXX)
chmod 755 "$WORK"
chown postgres: "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -f $WORK/data/postmaster.pid ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$((20000 + RANDOM % 20000))
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/data" -A trust -U postgres --no-sync >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
fsync = off
full_page_writes = on
EOF
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null

CONN="host=$WORK port=$PORT user=postgres"
psql() { "$PG_BIN/psql" -X -At -q -v ON_ERROR_STOP=1 -d "$CONN dbname=postgres" "$@"; }
sql() { psql -c "$1"; }

# ---- (a) backlog drain ------------------------------------------------------------------
# one slot per tool and compression, all holding the same backlog
COMPRESSIONS=${COMPRESSIONS:-none lz4 gzip}
for c in $COMPRESSIONS; do for t in ours theirs; do
    sql "select pg_create_physical_replication_slot('${t}_$c', true)" >/dev/null
done; done
START=$(sql "select min(restart_lsn) from pg_replication_slots")
echo "generating a ${SIZE_MB} MiB WAL backlog..." >&2
sql "create table backlog(id int, pad text)"
while (( $(sql "select (pg_current_wal_lsn() - '$START')::bigint / 1048576") < SIZE_MB )); do
    sql "insert into backlog select g, repeat(md5(g::text), 30) from generate_series(1, 50000) g" >/dev/null
done
ENDPOS=$(sql "select pg_switch_wal()")
sql "insert into backlog values (0, ''); select pg_switch_wal()" >/dev/null
BYTES=$(sql "select ('$ENDPOS'::pg_lsn - '$START')::bigint")

# field NAME FILE: a /usr/bin/time -v field.
field() { sed -n "s/^\s*$1: //p" "$2"; }
declare -A R
drain() { # drain TOOL BIN SLOT COMPRESSION
    local tool=$1 bin=$2 slot=$3 comp=$4 out=$WORK/drain-$1
    mkdir "$out"
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$WORK/$tool.time" "$bin" -D "$out" -S "$slot" -E "$ENDPOS" -n -Z "$comp" \
        -d "$CONN application_name=drain_$tool" >"$WORK/$tool.drain.log" 2>&1
    t1=$(date +%s.%N)
    local user sys rss
    user=$(field "User time (seconds)" "$WORK/$tool.time")
    sys=$(field "System time (seconds)" "$WORK/$tool.time")
    rss=$(field "Maximum resident set size (kbytes)" "$WORK/$tool.time")
    R[$tool.wall]=$(echo "$t1 - $t0" | bc -l)
    R[$tool.mbps]=$(echo "$BYTES / 1048576 / ${R[$tool.wall]}" | bc -l)
    R[$tool.cpu]=$(echo "$user + $sys" | bc -l)
    R[$tool.rss]=$(echo "$rss / 1024" | bc -l)
    R[$tool.files]=$(find "$out" -maxdepth 1 -name '????????????????????????*' ! -name '*.partial' | wc -l)
    R[$tool.mib]=$(du -sm "$out" | cut -f1)
    rm -rf "$out"
    for k in wall mbps cpu rss files mib; do R[$tool.$comp.$k]=${R[$tool.$k]}; done
}
for c in $COMPRESSIONS; do
    echo "draining $((BYTES / 1048576)) MiB with each tool, -Z $c..." >&2
    drain theirs "$THEIRS" "theirs_$c" "$c"
    drain ours "$OURS" "ours_$c" "$c"
    sql "select pg_drop_replication_slot('ours_$c'); select pg_drop_replication_slot('theirs_$c')" >/dev/null
done
sql "drop table backlog; checkpoint" >/dev/null

# ---- (b) --synchronous under pgbench ----------------------------------------------------
"$PG_BIN/pgbench" -q -i -s 10 -d "$CONN dbname=postgres" >/dev/null 2>&1
sync_run() { # sync_run TOOL BIN
    local tool=$1 bin=$2 app=sync_$1 out=$WORK/sync-$1 samples=$((SYNC_SECS * 10 - 20))
    mkdir "$out"
    /usr/bin/time -v -o "$WORK/$tool.sync.time" "$bin" -D "$out" --synchronous \
        -d "$CONN application_name=$app" >"$WORK/$tool.sync.log" 2>&1 &
    local timer=$!
    PIDS+=("$timer")
    sql "alter system set synchronous_standby_names = '$app'" >/dev/null
    sql "select pg_reload_conf()" >/dev/null
    for _ in $(seq 100); do
        [[ $(sql "select count(*) from pg_stat_replication where application_name = '$app' and sync_state = 'sync'") == 1 ]] && break
        sleep 0.1
    done
    "$PG_BIN/pgbench" -n -c 8 -j 2 -T "$SYNC_SECS" -d "$CONN dbname=postgres" >"$WORK/$tool.pgbench" 2>&1 &
    local bench=$!
    sleep 1
    local stats
    stats=$(psql <<EOF
create temp table lag(v bigint);
do \$\$ begin
  for i in 1..$samples loop
    insert into lag select (pg_current_wal_lsn() - flush_lsn)::bigint from pg_stat_replication where application_name = '$app';
    perform pg_sleep(0.1);
  end loop;
end \$\$;
select percentile_disc(0.5) within group (order by v) || ' ' || percentile_disc(0.95) within group (order by v) || ' ' || max(v) || ' ' || count(*) from lag;
EOF
)
    wait "$bench"
    read -r R[$tool.p50] R[$tool.p95] R[$tool.max] R[$tool.samples] <<<"$stats"
    R[$tool.tps]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/$tool.pgbench" | head -1)
    sql "alter system reset synchronous_standby_names" >/dev/null
    sql "select pg_reload_conf()" >/dev/null
    kill -INT "$(pgrep -P "$timer")" 2>/dev/null || true
    wait "$timer" || true
    R[$tool.srss]=$(echo "$(field "Maximum resident set size (kbytes)" "$WORK/$tool.sync.time") / 1024" | bc -l)
    rm -rf "$out"
}
if (( SYNC_SECS > 0 )); then
    echo "synchronous standby under pgbench, ${SYNC_SECS} s each..." >&2
    sync_run theirs "$THEIRS"
    sync_run ours "$OURS"
fi

# ---- report -------------------------------------------------------------------------------
row() { printf '%-40s %20s %20s\n' "$1" "$2" "$3"; }
f1() { if [[ $1 =~ ^[0-9.]+$ ]]; then printf '%.1f' "$1"; else printf '%s' "$1"; fi; }
echo
echo "PostgreSQL $(sql 'show server_version' | cut -d' ' -f1), backlog $((BYTES / 1048576)) MiB, $(nproc) CPUs"
row "" "barman-receive-wal" "pg_receivewal"
for c in $COMPRESSIONS; do
    row "(a) -Z $c: backlog drain MB/s" "$(f1 "${R[ours.$c.mbps]:-n/a}")" "$(f1 "${R[theirs.$c.mbps]:-n/a}")"
    row "(a) -Z $c: wall seconds" "$(f1 "${R[ours.$c.wall]:-n/a}")" "$(f1 "${R[theirs.$c.wall]:-n/a}")"
    row "(a) -Z $c: CPU seconds (user+sys)" "$(f1 "${R[ours.$c.cpu]:-n/a}")" "$(f1 "${R[theirs.$c.cpu]:-n/a}")"
    row "(a) -Z $c: peak RSS MiB" "$(f1 "${R[ours.$c.rss]:-n/a}")" "$(f1 "${R[theirs.$c.rss]:-n/a}")"
    row "(a) -Z $c: complete segments, MiB stored" "${R[ours.$c.files]:-n/a}, ${R[ours.$c.mib]:-n/a}" "${R[theirs.$c.files]:-n/a}, ${R[theirs.$c.mib]:-n/a}"
done
row "(b) pgbench tps (synchronous standby)" "${R[ours.tps]:-n/a}" "${R[theirs.tps]:-n/a}"
row "(b) flush lag p50 bytes" "${R[ours.p50]:-n/a}" "${R[theirs.p50]:-n/a}"
row "(b) flush lag p95 bytes" "${R[ours.p95]:-n/a}" "${R[theirs.p95]:-n/a}"
row "(b) flush lag max bytes" "${R[ours.max]:-n/a}" "${R[theirs.max]:-n/a}"
row "(b) lag samples" "${R[ours.samples]:-n/a}" "${R[theirs.samples]:-n/a}"
row "(b) peak RSS MiB" "$(f1 "${R[ours.srss]:-n/a}")" "$(f1 "${R[theirs.srss]:-n/a}")"
