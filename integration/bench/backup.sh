#!/usr/bin/env bash
# Base-backup benchmark: our `barman backup` (-> barman-backup, BASE_BACKUP) in plain format
# and with backup_compression = lz4|zstd (tar; client, and server location), against
# pg_basebackup -Fp / -Ft (Barman's options: --wal-method=none --no-slot -c fast), real
# Barman 3.20.1's `barman backup` (plain, and lz4) and `pgbackrest backup --type=full`
# (process-max=2; compress-type none, lz4, zst), all taking a full backup of the SAME
# PostgreSQL 15 cluster (pgbench -i -s SCALE) into a fresh local target.
#
# Before each timed backup (untimed): the archiver is drained, the contender's catalogue
# runs `barman archive-wal` (both Barmans archive incoming/ inside `barman backup`, so each
# starts with an empty incoming/), CHECKPOINT, `sync`, and every file of PGDATA is read once,
# so each tool starts with the data directory in the page cache and nothing dirty to write
# back. Each tool requests a fast checkpoint.
#
# Per tool and run: MB/s = sum(pg_database_size()) / 1e6 / wall s; wall s; CPU s (user+sys
# of the process tree, /usr/bin/time -v); PG CPU s (user+sys of PostgreSQL child processes
# that exited meanwhile, from the postmaster's cutime+cstime: the walsender, which reads and,
# with server location, compresses; backends); peak RSS (largest process of the tree); the
# backup's size on disk (du -sB1). Each backup is verified minimally (ours/Barman: DONE or
# WAITING_FOR_WALS in `barman -f json list-backups`, plus, for compressed ones, a
# base.tar.<codec> in the backup; pg_basebackup: exit 0; pgBackRest: `pgbackrest info` lists
# the new label); a failure is a FAILED cell and exit status 1. Targets are printed under
# the table with the measured ratios.
#
# One PostgreSQL archives through one archive_command chain (as recover.sh, but a script,
# set up after pgbench -i so that its WAL is not copied 8 times): pgbackrest archive-push %p
# (its backup waits for its stop segment in its repo) && cp %p -> the incoming/ of each
# catalogue (one Barman home per contender; Barman refuses to back up a server whose WAL
# archive is empty). Both Barmans then archive the backup's own WAL inside `barman backup`.
#
# Run as root; everything lives in a scratch dir /tmp/barman-backupbench.* and is stopped
# and removed by a trap. Knobs:
#   SCALE       pgbench scale (default 100, ~1.5 GB; QUICK: 10)
#   TOOLS       contenders, in order (default: all of
#               "ours ours-lz4 ours-zstd ours-lz4-server ours-zstd-server pgb-fp pgb-ft
#                pgb-ft-lz4 pgb-ft-zstd real real-lz4 pgbr-none pgbr-lz4 pgbr-zst")
#   RUNS        backups per tool (default 1); even runs go through TOOLS in reverse order
#   LZ4_LEVEL, ZSTD_LEVEL  compression level given to every tool (default 1 and 3:
#               pgBackRest's defaults); empty = each tool's own default
#   PGBR_PROCESS_MAX  pgBackRest process-max (default 2)
#   BACKUP_TIMEOUT    seconds before a backup is killed and marked FAILED (default 1800)
#   OURS_COMPRESSED   auto (default: our compressed rows run once
#               /tmp/barman-backup-compression.ready exists, else n/a), 1 (always), 0 (never)
#   QUICK=1     small smoke run
#   OUR_BIN     our release binaries (default <repo>/target/release, built first unless NO_BUILD=1)
#   BARMAN_VENV real Barman venv (default /opt/barman-venv)
#   KEEP=1      keep the scratch dir (logs: backup.<tool>.<run>.out, time.<tool>.<run>, pglog/pg.log)
#   KEEP_BACKUPS=1  keep every backup (default: each is deleted once measured, to save disk;
#               pgBackRest's stay in its repo either way)
# Progress goes to stderr, the table to stdout.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUR_BIN=${OUR_BIN:-$REPO/target/release}
VENV=${BARMAN_VENV:-/opt/barman-venv}
PG_BIN=/usr/lib/postgresql/15/bin
# shellcheck source=lib.sh
. "$REPO/integration/bench/lib.sh"
if [ "${QUICK:-0}" = 1 ]; then SCALE=${SCALE:-10}; else SCALE=${SCALE:-100}; fi
ALL_TOOLS="ours ours-lz4 ours-zstd ours-lz4-server ours-zstd-server pgb-fp pgb-ft pgb-ft-lz4 pgb-ft-zstd real real-lz4 pgbr-none pgbr-lz4 pgbr-zst"
TOOLS=${TOOLS:-$ALL_TOOLS}
RUNS=${RUNS:-1}
LZ4_LEVEL=${LZ4_LEVEL-1}
ZSTD_LEVEL=${ZSTD_LEVEL-3}
PGBR_PROCESS_MAX=${PGBR_PROCESS_MAX:-2}
BACKUP_TIMEOUT=${BACKUP_TIMEOUT:-1800}
OURS_COMPRESSED=${OURS_COMPRESSED:-auto}
MARKER=/tmp/barman-backup-compression.ready

require_root
for t in $TOOLS; do [[ " $ALL_TOOLS " == *" $t "* ]] || die "unknown tool '$t' in TOOLS (known: $ALL_TOOLS)"; done
build_ours
for f in "$OUR_BIN/barman" "$OUR_BIN/barman-backup" "$VENV/bin/barman" "$PG_BIN/initdb" "$PG_BIN/pgbench" \
         "$PG_BIN/pg_basebackup"; do
    [ -x "$f" ] || die "missing $f (cargo build --release? integration/setup.sh?)"
done
case $OURS_COMPRESSED in
    auto) if [ -e "$MARKER" ]; then OURS_COMPRESSED=1; else OURS_COMPRESSED=0; fi ;;
    0|1) ;;
    *) die "OURS_COMPRESSED must be auto, 0 or 1" ;;
esac
HAVE_PGBR=0; command -v pgbackrest >/dev/null && HAVE_PGBR=1
if [ ! -x /usr/bin/time ]; then apt-get install -y -qq time >/dev/null 2>&1 || die "cannot install time"; fi
T_START=$(date +%s)

S=$(mktemp -d /tmp/barman-backupbench.XXXXXX)
chmod 755 "$S"
PGDATA=$S/pgdata
cleanup() {
    set +e
    log "cleanup"
    local p
    [ -f "$PGDATA/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1
    # leftovers naming the scratch dir (pgbackrest workers, pg_basebackup of Barman): ours, by pid
    for p in $(pgrep -f -- "$S" 2>/dev/null); do [ "$p" != $$ ] && kill "$p" 2>/dev/null; done
    if [ "${KEEP:-0}" = 1 ]; then log "kept $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { sed -n "s/^\s*$1: //p" "$2"; }          # a /usr/bin/time -v field
CLK_TCK=$(getconf CLK_TCK)

# Our binaries are copied so a concurrent `cargo build` cannot swap them mid-run.
copy_ours "$S"

########## PostgreSQL 15 ##########
PGPORT=$(free_port)
mkdir -p "$PGDATA" "$S/sock" "$S/pgb" "$S/pglog"
chown postgres: "$PGDATA" "$S/sock" "$S/pgb" "$S/pglog"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres --no-sync >"$S/initdb.log" 2>&1 || die "initdb: $(cat "$S/initdb.log")"

########## the catalogues: one Barman home per (implementation, setting) ##########
# home name -> extra server lines; ours-* run our barman, real-* Barman 3.20.1
declare -A HOME_CONF=(
    [ours]=""
    [ours-lz4]=$'backup_compression = lz4\nbackup_compression_format = tar\nbackup_compression_location = client'
    [ours-zstd]=$'backup_compression = zstd\nbackup_compression_format = tar\nbackup_compression_location = client'
    [ours-lz4-server]=$'backup_compression = lz4\nbackup_compression_format = tar\nbackup_compression_location = server'
    [ours-zstd-server]=$'backup_compression = zstd\nbackup_compression_format = tar\nbackup_compression_location = server'
    [real]=""
    [real-lz4]=$'backup_compression = lz4\nbackup_compression_format = tar\nbackup_compression_location = client'
)
level_of() { case $1 in *lz4*) echo "$LZ4_LEVEL" ;; *zst*) echo "$ZSTD_LEVEL" ;; esac; }
for h in "${!HOME_CONF[@]}"; do
    d=$S/b-$h; mkdir -p "$d/home/pg/incoming" "$d/tmp"
    extra=${HOME_CONF[$h]}
    lvl=$(level_of "$h")
    [ -n "$extra" ] && [ -n "$lvl" ] && extra="$extra"$'\n'"backup_compression_level = $lvl"
    cat >"$d/barman.conf" <<EOF
[barman]
barman_home = $d/home
barman_user = postgres
log_file = $d/barman.log
log_level = INFO

[pg]
description = backupbench $h
conninfo = host=$S/sock port=$PGPORT user=postgres dbname=postgres
streaming_conninfo = host=$S/sock port=$PGPORT user=postgres
backup_method = postgres
archiver = on
path_prefix = $PG_BIN
$extra
EOF
    touch "$d/barman.log"; chown -R postgres: "$d"; chmod 755 "$d"
done
barman_of() { # home args...: that home's `barman` (ours or Barman 3.20.1) as postgres
    local h=$1; shift
    if [[ $h == ours* ]]; then
        as_pg PATH="$S/ours-bin:$PG_BIN:$SYS_PATH" "$S/ours-bin/barman" -c "$S/b-$h/barman.conf" "$@"
    else
        as_pg PATH="$VENV/bin:$PG_BIN:$SYS_PATH" "$VENV/bin/barman" -c "$S/b-$h/barman.conf" "$@"
    fi
}
PGBR_CONF=$S/pgbr/pgbackrest.conf
if [ $HAVE_PGBR = 1 ]; then
    mkdir -p "$S/pgbr"/{repo,lock,log,spool}
    cat >"$PGBR_CONF" <<EOF
[global]
repo1-path=$S/pgbr/repo
lock-path=$S/pgbr/lock
log-path=$S/pgbr/log
spool-path=$S/pgbr/spool
log-level-console=warn
log-level-file=info
compress-type=none
start-fast=y
process-max=$PGBR_PROCESS_MAX
[demo]
pg1-path=$PGDATA
pg1-socket-path=$S/sock
pg1-port=$PGPORT
EOF
    chown -R postgres: "$S/pgbr"
fi
# The archive chain is a script (PostgreSQL 15 cuts archive_command at 1024 bytes). Every
# catalogue gets the WAL (Barman refuses to start a backup without any: "Check 'WAL
# archive' failed"); pgBackRest's archive-push goes first, as its backup waits for it.
# Each call's duration goes to pglog/archive.log: a BASE_BACKUP without WAL (ours,
# pg_basebackup -X none) waits for its last segment to be archived, so one call is part of
# every wall time.
{
    echo '#!/bin/bash'
    echo 'set -e; t0=$(date +%s.%N)'
    echo "trap 'echo \"\$2 FAILED: \$BASH_COMMAND\" >>$S/pglog/archive.log' ERR"
    [ $HAVE_PGBR = 1 ] && echo "pgbackrest --config=$PGBR_CONF --stanza=demo archive-push \"\$1\""
    for h in $(printf '%s\n' "${!HOME_CONF[@]}" | sort); do
        echo "cp \"\$1\" $S/b-$h/tmp/\"\$2\" && mv $S/b-$h/tmp/\"\$2\" $S/b-$h/home/pg/incoming/\"\$2\""
    done
    echo "echo \"\$2 \$(awk -v a=\$t0 -v b=\$(date +%s.%N) 'BEGIN{printf \"%.3f\", b-a}')\" >>$S/pglog/archive.log"
} >"$S/archive-pgbackrest-and-cp.sh"
chmod 755 "$S/archive-pgbackrest-and-cp.sh"
CHAIN="$S/archive-pgbackrest-and-cp.sh %p %f"   # pgbackrest insists on "pgbackrest" in it
cat >>"$PGDATA/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$S/sock'
fsync = off
synchronous_commit = off
wal_level = replica
max_wal_senders = 10
max_wal_size = 4GB
archive_mode = on
archive_command = '/bin/true'
EOF
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$S/pglog/pg.log" -w start >/dev/null || die "pg start: $(tail -20 "$S/pglog/pg.log")"
PM_PID=$(head -1 "$PGDATA/postmaster.pid")
psql_() { as_pg "$PG_BIN/psql" -X -At -q -h "$S/sock" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
if [ $HAVE_PGBR = 1 ]; then
    as_pg pgbackrest --config="$PGBR_CONF" --stanza=demo stanza-create >"$S/pgbr-stanza.out" 2>&1 \
        || { log "pgbackrest stanza-create failed, leaving pgBackRest out: $(tail -3 "$S/pgbr-stanza.out")"; HAVE_PGBR=0; }
fi

log "pgbench -i -s $SCALE"
t0=$(now)
as_pg "$PG_BIN/pgbench" -h "$S/sock" -p "$PGPORT" -U postgres -i -s "$SCALE" -q postgres >"$S/pgbench-init.log" 2>&1 \
    || die "pgbench -i: $(tail -5 "$S/pgbench-init.log")"
psql_ -c "checkpoint" >/dev/null
log "pgbench -i took $(secs "$t0" "$(now)") s"
# The chain only from now on: pgbench -i's WAL (~1.7 GB at scale 100) went to /bin/true, or
# every catalogue would hold a copy of it (and `barman backup` would archive it, timed).
psql_ -c "alter system set archive_command = '$CHAIN'" >/dev/null
psql_ -c "select pg_reload_conf()" >/dev/null
sleep 1
psql_ -c "create table bench_marker(t timestamptz); insert into bench_marker values (now())" >/dev/null
psql_ -c "select pg_switch_wal()" >/dev/null
DB_BYTES=$(psql_ -c "select sum(pg_database_size(oid)) from pg_database")
PGDATA_BYTES=$(du -sb --apparent-size --exclude=pg_wal "$PGDATA" | cut -f1)
MB=$(awk -v b="$DB_BYTES" 'BEGIN{printf "%.1f", b/1e6}')

########## one backup ##########
wait_archived() { # until no .ready file is left (the archive chain has caught up)
    local i n=1
    for i in $(seq 600); do
        n=$(psql_ -c "select count(*) from pg_ls_archive_statusdir() where name like '%.ready'")
        [ "$n" = 0 ] && return 0; sleep 0.2
    done
    die "archiving is stuck: $n .ready files left (failed_count|last_failed_wal: $(psql_ -c 'select failed_count, last_failed_wal from pg_stat_archiver'); see pglog/pg.log, KEEP=1)"
}
pg_child_cpu() { # user+sys clock ticks of the postmaster's reaped children
    awk '{print $16 + $17}' "/proc/$PM_PID/stat" 2>/dev/null || echo 0
}
warm_up() { # tool
    wait_archived
    # Both Barmans run their archiver inside `barman backup` (incoming/ -> wals/): give each
    # the same empty incoming/ to start with.
    case $1 in ours*|real*) barman_of "$1" archive-wal pg >>"$S/archive-wal.out" 2>&1 \
        || die "$1: barman archive-wal: $(tail -3 "$S/archive-wal.out")" ;; esac
    psql_ -c "checkpoint" >/dev/null
    sync
    find "$PGDATA" -type f ! -path "$PGDATA/pg_wal/*" -print0 | xargs -0 cat >/dev/null 2>&1
}
label_of() {
    case $1 in
        ours) echo "ours: barman backup (plain)" ;;
        ours-lz4) echo "ours: barman backup lz4 tar client" ;;
        ours-zstd) echo "ours: barman backup zstd tar client" ;;
        ours-lz4-server) echo "ours: barman backup lz4 tar server" ;;
        ours-zstd-server) echo "ours: barman backup zstd tar server" ;;
        pgb-fp) echo "pg_basebackup -Fp" ;;
        pgb-ft) echo "pg_basebackup -Ft" ;;
        pgb-ft-lz4) echo "pg_basebackup -Ft client-lz4" ;;
        pgb-ft-zstd) echo "pg_basebackup -Ft client-zstd" ;;
        real) echo "Barman 3.20.1: barman backup (plain)" ;;
        real-lz4) echo "Barman 3.20.1: barman backup lz4 tar client" ;;
        pgbr-none) echo "pgbackrest backup compress-type=none" ;;
        pgbr-lz4) echo "pgbackrest backup compress-type=lz4" ;;
        pgbr-zst) echo "pgbackrest backup compress-type=zst" ;;
    esac
}
pgb_compress() { # pg_basebackup --compress value for a pgb-* tool
    local codec=$1 lvl; lvl=$(level_of "$codec")
    echo "client-$codec${lvl:+:$lvl}"
}
backup_ids() { ls "$S/b-$1/home/pg/base" 2>/dev/null | sort; }
catalogue_status() { # home id -> status from `barman -f json list-backups pg`
    barman_of "$1" -f json list-backups pg 2>"$S/list.err" | python3 -c '
import json, sys
want = sys.argv[1]
try:
    data = json.load(sys.stdin)
except Exception as e:
    print("unreadable list-backups JSON: %s" % e); sys.exit()
for b in (data.get("pg") or []):
    if b.get("backup_id") == want:
        print(b.get("status")); sys.exit()
print("not listed")' "$2"
}
pgbr_labels() { ls "$S/pgbr/repo/backup/demo" 2>/dev/null | grep -E '^[0-9]{8}-[0-9]{6}F$' | sort; }

declare -A MBPS_LIST   # tool -> space-separated MB/s of successful runs
ROWS=()
FAILED=0
row() { ROWS+=("$1|$2|$3|$4|$5|$6|$7|$8"); }
run_one() { # tool run
    local tool=$1 run=$2 label; label=$(label_of "$tool")
    [ "$RUNS" -gt 1 ] && label="$label (run $run)"
    if [[ $tool == ours-* ]] && [ "$OURS_COMPRESSED" = 0 ]; then
        row "$label" n/a n/a n/a n/a n/a n/a "n/a (not configured: no $MARKER yet; OURS_COMPRESSED=1 forces)"
        return
    fi
    if [[ $tool == pgbr-* ]] && [ $HAVE_PGBR = 0 ]; then
        row "$label" n/a n/a n/a n/a n/a n/a "n/a (pgbackrest missing or stanza-create failed)"
        return
    fi
    local out=$S/backup.$tool.$run.out tf=$S/time.$tool.$run dest="" before="" codec=""
    local -a cmd
    case $tool in
        ours*|real*)
            before=$(backup_ids "$tool")
            local bin=$S/ours-bin/barman conf=$S/b-$tool/barman.conf path=$S/ours-bin:$PG_BIN:$SYS_PATH
            [[ $tool == real* ]] && { bin=$VENV/bin/barman; path=$VENV/bin:$PG_BIN:$SYS_PATH; }
            cmd=("${AS_PG[@]}" PATH="$path" "$bin" -c "$conf" backup --immediate-checkpoint pg)
            case $tool in *lz4*) codec=lz4 ;; *zstd*) codec=zst ;; esac ;;
        pgb-*)
            dest=$S/pgb/$tool.$run
            cmd=("${AS_PG[@]}" PATH="$PG_BIN:$SYS_PATH" "$PG_BIN/pg_basebackup" -h "$S/sock" -p "$PGPORT" -U postgres
                 --no-password -D "$dest" --wal-method=none --no-slot -c fast)
            case $tool in
                pgb-fp) cmd+=(-Fp) ;;
                pgb-ft) cmd+=(-Ft) ;;
                pgb-ft-lz4) cmd+=(-Ft --compress="$(pgb_compress lz4)") ;;
                pgb-ft-zstd) cmd+=(-Ft --compress="$(pgb_compress zstd)") ;;
            esac ;;
        pgbr-*)
            before=$(pgbr_labels)
            local ct=${tool#pgbr-} lvl
            lvl=$(level_of "$ct")
            cmd=("${AS_PG[@]}" PATH="$PG_BIN:$SYS_PATH" pgbackrest --config="$PGBR_CONF" --stanza=demo
                 --compress-type="$ct" ${lvl:+--compress-level=$lvl} --type=full backup) ;;
    esac
    log "run $run: $label: warming up (drain archiver, archive-wal, checkpoint, sync, read PGDATA)"
    warm_up "$tool"
    local cpu0 t0 t1 rc cpu1
    cpu0=$(pg_child_cpu)
    log "run $run: $label"
    t0=$(now)
    /usr/bin/time -v -o "$tf" timeout -k 10 "$BACKUP_TIMEOUT" "${cmd[@]}" >"$out" 2>&1; rc=$?
    t1=$(now)
    sleep 0.5   # let the postmaster reap the walsender
    cpu1=$(pg_child_cpu)
    local wall mbps cpu rss pgcpu size="" note="" ok=1
    wall=$(secs "$t0" "$t1")
    mbps=$(awk -v b="$DB_BYTES" -v w="$wall" 'BEGIN{printf "%.1f", b/1e6/w}')
    cpu=$(awk -v u="$(field "User time (seconds)" "$tf")" -v s="$(field "System time (seconds)" "$tf")" 'BEGIN{printf "%.1f", u+s}')
    rss=$(awk -v k="$(field "Maximum resident set size (kbytes)" "$tf")" 'BEGIN{printf "%.1f", k/1024}')
    pgcpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$CLK_TCK" 'BEGIN{printf "%.1f", (b-a)/t}')
    if [ $rc = 124 ] || [ $rc = 137 ]; then ok=0; note="FAILED: timed out after $BACKUP_TIMEOUT s (BACKUP_TIMEOUT)"
    elif [ $rc -ne 0 ]; then
        ok=0; note="FAILED: exit $rc: $( (grep -m1 -E 'ERROR|FATAL' "$out" || grep -v '^\s*$' "$out" | tail -1) | cut -c1-160)"
        log "$label: exit $rc; output tail:"; tail -8 "$out" >&2
    fi
    case $tool in
        ours*|real*)
            local id st
            id=$(comm -13 <(echo "$before") <(backup_ids "$tool") | tail -1)
            if [ -z "$id" ]; then
                ok=0; note=${note:-"FAILED: no new backup in the catalogue"}
            else
                st=$(catalogue_status "$tool" "$id")
                size=$(du -sB1 "$S/b-$tool/home/pg/base/$id" | cut -f1)
                if [ $ok = 1 ] && [ "$st" != DONE ] && [ "$st" != WAITING_FOR_WALS ]; then
                    ok=0; note="FAILED: $id is $st in list-backups"
                fi
                if [ $ok = 1 ] && [ -n "$codec" ]; then
                    local tarball comp
                    tarball=$(find "$S/b-$tool/home/pg/base/$id" -name "*.tar.$codec" | head -1)
                    comp=$(sed -n 's/^compression=//p' "$S/b-$tool/home/pg/meta/$id-backup.info" 2>/dev/null)
                    if [ -z "$tarball" ]; then
                        ok=0; note="FAILED: not compressed (no *.tar.$codec in base/$id; backup.info compression=${comp:-unset})"
                    else
                        note="$st; ${tarball#"$S/b-$tool/home/pg/base/$id/"}, compression=${comp:-unset}"
                    fi
                fi
                [ $ok = 1 ] && [ -z "$note" ] && note=$st
                [ "${KEEP_BACKUPS:-0}" = 1 ] || barman_of "$tool" delete pg "$id" >>"$S/delete.out" 2>&1 \
                    || rm -rf "$S/b-$tool/home/pg/base/$id"
            fi ;;
        pgb-*)
            [ -d "$dest" ] && size=$(du -sB1 "$dest" | cut -f1)
            [ $ok = 1 ] && note="exit 0; $(ls "$dest" | grep -v backup_manifest | head -3 | tr '\n' ' ')"
            [ "${KEEP_BACKUPS:-0}" = 1 ] || rm -rf "$dest" ;;
        pgbr-*)
            local newl
            newl=$(comm -13 <(echo "$before") <(pgbr_labels) | tail -1)
            if [ -n "$newl" ]; then
                size=$(du -sB1 "$S/pgbr/repo/backup/demo/$newl" | cut -f1)
                if ! as_pg pgbackrest --config="$PGBR_CONF" --stanza=demo info 2>&1 | grep -q "full backup: $newl"; then
                    ok=0; note=${note:-"FAILED: pgbackrest info does not show $newl"}
                fi
                [ $ok = 1 ] && note="pgbackrest info: full backup $newl"
            else
                ok=0; note=${note:-"FAILED: no new backup label in the repo"}
            fi ;;
    esac
    local size_mib="n/a"; [ -n "$size" ] && size_mib=$(awk -v b="$size" 'BEGIN{printf "%.1f", b/1048576}')
    if [ $ok = 1 ]; then
        MBPS_LIST[$tool]="${MBPS_LIST[$tool]:-} $mbps"
    else
        FAILED=1; log "$label: $note"; mbps="FAILED"
    fi
    row "$label" "$mbps" "$wall" "$cpu" "$pgcpu" "$rss" "$size_mib" "$note"
    log "  -> $mbps MB/s, $wall s, CPU $cpu s, PG CPU $pgcpu s, RSS $rss MiB, $size_mib MiB: $note"
}

REVERSED=$(printf '%s\n' $TOOLS | tac | tr '\n' ' ')
for run in $(seq "$RUNS"); do
    order=$TOOLS; [ $((run % 2)) = 0 ] && order=$REVERSED
    for tool in $order; do run_one "$tool" "$run"; done
done

########## report ##########
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{ if(NR==0){print ""; exit} if(NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
med() { echo "${MBPS_LIST[$1]:-}" | median; }
target() { # text ours theirs min
    local a b; a=$(med "$2"); b=$(med "$3")
    if [ -z "$a" ] || [ -z "$b" ]; then
        echo "  $1: n/a ($(label_of "$2"): ${a:-no result}, $(label_of "$3"): ${b:-no result})"
        return
    fi
    awk -v t="$1" -v a="$a" -v b="$b" -v m="$4" 'BEGIN{r=a/b; printf "  %s: %.2fx (%s vs %s MB/s, target >= %.1fx): %s\n", t, r, a, b, m, (r>=m ? "met" : "NOT met")}'
}
PGBR_VER=$(pgbackrest version 2>/dev/null || echo 'no pgbackrest')
echo
echo "Machine: nproc=$(nproc), CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -r), load avg at end $(cut -d' ' -f1-3 /proc/loadavg); shared with other jobs, so timings are noisy"
echo "Versions: Barman $("$VENV/bin/barman" -v 2>&1 | head -1 | awk '{print $1}'), $PGBR_VER, PG $("$PG_BIN/postgres" -V | awk '{print $3}'), ours $("$S/ours-bin/barman" --version 2>&1 | head -1)"
echo "Data: pgbench -i -s $SCALE; MB/s = sum(pg_database_size()) = $MB MB (1 MB = 1e6 bytes) / wall s; PGDATA without pg_wal: $(awk -v b="$PGDATA_BYTES" 'BEGIN{printf "%.1f", b/1e6}') MB (du --apparent-size)"
echo "Each run: archiver drained, archive-wal (Barman homes), CHECKPOINT, sync, PGDATA read into the page cache (untimed); fast checkpoint requested; all local, same disk"
echo "Levels: lz4 ${LZ4_LEVEL:-tool default}, zstd ${ZSTD_LEVEL:-tool default} (every tool); pgbackrest process-max=$PGBR_PROCESS_MAX; our compressed rows: $([ "$OURS_COMPRESSED" = 1 ] && echo run || echo "n/a (no $MARKER)")"
echo "CPU s: user+sys of the command's process tree; PG CPU s: PostgreSQL children that exited meanwhile (walsender, backends); size: du -sB1 of the backup; runs: $RUNS"
echo "archive_command (pgbackrest archive-push + one cp per catalogue; a backup waits for one): median $(awk '$2 != "FAILED:" {print $2}' "$S/pglog/archive.log" 2>/dev/null | sort -g | awk '{a[NR]=$1} END{print (NR ? a[int((NR+1)/2)] : "n/a")}') s over $(grep -vc FAILED "$S/pglog/archive.log" 2>/dev/null) calls; failed calls: $(grep -c FAILED "$S/pglog/archive.log" 2>/dev/null)$(grep -m1 FAILED "$S/pglog/archive.log" 2>/dev/null | sed 's/^/, first: /')"
echo "Total bench time: $(( $(date +%s) - T_START )) s"
echo
{
    echo "tool|MB/s|wall s|CPU s|PG CPU s|peak RSS MiB|size MiB|result"
    echo "----|----|------|-----|--------|------------|--------|------"
    printf '%s\n' "${ROWS[@]}"
} | column -t -s'|' -o ' | '
echo
echo "Targets: plain >= pg_basebackup -Fp; lz4 and zstd >= 1.1x pgBackRest with the same codec (median MB/s over runs)"
target "ours plain / pg_basebackup -Fp" ours pgb-fp 1.0
target "ours lz4 (client) / pgbackrest lz4" ours-lz4 pgbr-lz4 1.1
target "ours zstd (client) / pgbackrest zst" ours-zstd pgbr-zst 1.1
echo "For reference:"
target "ours lz4 (server) / pgbackrest lz4" ours-lz4-server pgbr-lz4 1.1
target "ours zstd (server) / pgbackrest zst" ours-zstd-server pgbr-zst 1.1
target "ours plain / Barman 3.20.1 plain" ours real 1.0
target "ours lz4 (client) / pg_basebackup -Ft client-lz4" ours-lz4 pgb-ft-lz4 1.0
target "ours zstd (client) / pg_basebackup -Ft client-zstd" ours-zstd pgb-ft-zstd 1.0
[ $FAILED = 0 ] || { log "FAILED: at least one backup failed (see the table)"; exit 1; }
