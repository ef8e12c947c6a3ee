#!/usr/bin/env bash
# rsync-method benchmark (issue 18): one PostgreSQL 15 holding ten equally sized tables
# (SCALE x 10,000 rows of ~130 bytes each), PGDATA read as `postgres` over a private sshd
# on loopback, backed up by our `barman backup` and real Barman 3.20.1's with
# backup_method = rsync, and by plain `rsync -a` of the same tree over the same ssh (the floor):
#   1. first backup at parallel_jobs 1 and 4: wall s, MB/s (sum of pg_database_size), peak RSS;
#   2. ours, reuse_backup = link: rows of ONE of the ten tables updated, second backup: wall s,
#      bytes the second backup added on disk (du over both: linked files count once),
#      files hard-linked into the first;
#   3. remote recovery of the last backup over ssh as postgres with --jobs 4, ours vs Barman.
# Targets (issue 18): first backup >= 1.5x Barman's MB/s and within 1.2x of the floor's wall;
# second >= 3x faster than the first; recovery >= 1.5x faster than Barman's.
# Run as root. Knobs: SCALE (default 100 = ~1.3 GB; QUICK=1: 5), OUR_BIN (default
# <repo>/target/release, built unless NO_BUILD=1), BARMAN_VENV, KEEP=1. Table on stdout.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUR_BIN=${OUR_BIN:-$REPO/target/release}
VENV=${BARMAN_VENV:-/opt/barman-venv}
PG_BIN=/usr/lib/postgresql/15/bin
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "${QUICK:-0}" = 1 ]; then SCALE=${SCALE:-5}; else SCALE=${SCALE:-100}; fi

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
if [ "$OUR_BIN" = "$REPO/target/release" ] && [ "${NO_BUILD:-0}" != 1 ]; then
    log "building our release binaries (NO_BUILD=1 skips)"
    (cd "$REPO" && cargo build --release -q -p barman -p barman-backup) || log "WARNING: cargo build failed"
fi
for f in "$OUR_BIN/barman" "$OUR_BIN/barman-backup" "$VENV/bin/barman" /usr/sbin/sshd /usr/bin/rsync /usr/bin/time \
         "$PG_BIN/initdb"; do
    [ -x "$f" ] || die "missing $f (cargo build --release? integration/setup.sh? apt-get install time?)"
done

S=$(mktemp -d /tmp/barman-rsyncbench.XXXXXX)
chmod 755 "$S"
PGDATA=$S/pgdata
SSHD_PID=""
cleanup() {
    set +e
    [ -f "$PGDATA/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1
    for d in "$S"/rec_*; do
        [ -f "$d/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
    done
    [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then log "kept $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
as_pg() { runuser -u postgres -- env -i HOME=/var/lib/postgresql "$@"; }
as_barman() { runuser -u barman -- env -i HOME=/var/lib/barman "$@"; }
mkdir -p "$S/ours-bin"; cp "$OUR_BIN/barman" "$OUR_BIN/barman-backup" "$S/ours-bin/"; chmod -R 755 "$S/ours-bin"

########## sshd: postgres@127.0.0.1 for the barman user ##########
mkdir -p "$S/ssh" "$S/sshb" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$S/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$S/sshb/id_ed25519"
cp "$S/sshb/id_ed25519.pub" "$S/ssh/authorized_keys"; chmod 644 "$S/ssh/authorized_keys"
PORT=$(free_port)
cat >"$S/ssh/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $S/ssh/host_key
PidFile $S/ssh/sshd.pid
AuthorizedKeysFile $S/ssh/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers postgres
UseDNS no
MaxStartups 200
MaxSessions 200
LogLevel ERROR
SetEnv PATH=$SYS_PATH
EOF
/usr/sbin/sshd -D -e -f "$S/ssh/sshd_config" >"$S/ssh/sshd.log" 2>&1 &
SSHD_PID=$!
cat >"$S/sshb/config" <<EOF
Host *
    Port $PORT
    IdentityFile $S/sshb/id_ed25519
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    BatchMode yes
    LogLevel ERROR
EOF
chown -R barman: "$S/sshb"
SSH="ssh -F $S/sshb/config postgres@127.0.0.1"
for _ in $(seq 50); do as_barman $SSH true 2>/dev/null && break; sleep 0.2; done
as_barman $SSH true || die "ssh as postgres does not work: $(cat "$S/ssh/sshd.log")"

########## PostgreSQL 15: ten equal tables ##########
PGPORT=$(free_port)
mkdir -p "$PGDATA" "$S/sock"; chown postgres: "$PGDATA" "$S/sock"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres --no-sync >"$S/initdb.log" 2>&1 || die "initdb failed"
for who in ours real; do mkdir -p "$S/$who/home/pg/incoming"; chown -R barman: "$S/$who"; chmod 0777 "$S/$who/home/pg/incoming"; done
# The load runs with wal_level = minimal (no WAL for the tables, nothing archived: the disk
# holds PGDATA once, not three times), then the tables are frozen so that nothing but the
# benchmark's own update touches their files again, and PostgreSQL restarts archiving.
cat >>"$PGDATA/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$S/sock'
fsync = off
max_wal_size = 1GB
wal_level = minimal
max_wal_senders = 0
archive_mode = off
EOF
mkdir -p "$S/pglog"; chown postgres: "$S/pglog"
pg_start() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$S/pglog/pg.log" -w start >/dev/null || die "pg start: $(tail "$S/pglog/pg.log")"; }
pg_start
psql_() { as_pg "$PG_BIN/psql" -X -At -q -h "$S/sock" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
log "loading ten tables of $((SCALE * 10000)) rows"
for i in $(seq 0 9); do
    psql_ -c "create table t$i as select g as id, repeat('x', 100) as v from generate_series(1, $((SCALE * 10000))) g"
done
psql_ -c "vacuum (freeze, analyze)" -c "checkpoint"
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null || die "pg stop"
cat >>"$PGDATA/postgresql.conf" <<EOF
wal_level = replica
max_wal_senders = 10
archive_mode = on
archive_command = 'install -m 0644 %p $S/ours/home/pg/incoming/%f && install -m 0644 %p $S/real/home/pg/incoming/%f'
EOF
pg_start
DB_BYTES=$(psql_ -c "select sum(pg_database_size(datname)) from pg_database")

for who in ours real; do
    cat >"$S/$who/barman.conf" <<EOF
[barman]
barman_home = $S/$who/home
barman_user = barman
log_file = $S/$who/barman.log
[pg]
conninfo = host=$S/sock port=$PGPORT user=postgres dbname=postgres
ssh_command = $SSH
backup_method = rsync
backup_options = concurrent_backup
archiver = on
reuse_backup = link
log_level = $([ "$who" = ours ] && echo DEBUG || echo INFO)
EOF
    chown barman: "$S/$who/barman.conf"
done
barman_() { # who args...
    local who=$1; shift
    local bin="$S/ours-bin/barman" path="$S/ours-bin:$SYS_PATH"
    [ "$who" = real ] && { bin=$VENV/bin/barman; path=$VENV/bin:$SYS_PATH; }
    as_barman PATH="$path" "$bin" -c "$S/$who/barman.conf" "$@"
}
ROWS=()
FAILURES=0
timed() { # label who args...: wall seconds and peak RSS (MiB) of one barman command
    local label=$1 who=$2; shift 2
    local t0 t1
    t0=$(now)
    /usr/bin/time -v -o "$S/time.$label" runuser -u barman -- env -i HOME=/var/lib/barman \
        PATH="$([ "$who" = real ] && echo "$VENV/bin" || echo "$S/ours-bin"):$SYS_PATH" \
        "$([ "$who" = real ] && echo "$VENV/bin/barman" || echo "$S/ours-bin/barman")" -c "$S/$who/barman.conf" "$@" \
        >"$S/out.$label" 2>&1
    local rc=$?
    t1=$(now)
    WALL=$(secs "$t0" "$t1")
    if [ "$rc" != 0 ]; then log "FAILED: $label ($(tail -3 "$S/out.$label"))"; WALL=FAILED; FAILURES=1; fi
    RSS=$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2/1024}' "$S/time.$label")
}
mbps() { [ "$1" = FAILED ] && { echo FAILED; return; }; awk -v b="$DB_BYTES" -v s="$1" 'BEGIN{printf "%.1f", b/1e6/s}'; }
drop_backups() { # who
    for id in $(barman_ "$1" -f json list-backups pg 2>/dev/null | python3 -c 'import json,sys;[print(b["backup_id"]) for b in json.load(sys.stdin)["pg"]]'); do
        barman_ "$1" delete pg "$id" >/dev/null 2>&1
    done
}

########## 1. first backups and the floor ##########
for who in ours real; do barman_ "$who" switch-wal --force --archive pg >/dev/null 2>&1 || barman_ "$who" cron >/dev/null 2>&1; done
t0=$(now)
mkdir -p "$S/floor"; chown barman: "$S/floor"
as_barman rsync -a --exclude='/pg_wal/*' -e "ssh -F $S/sshb/config" "postgres@127.0.0.1:$PGDATA/" "$S/floor/" \
    || log "floor rsync failed"
FLOOR=$(secs "$t0" "$(now)")
ROWS+=("plain rsync -a, pg_wal excluded as by the backups (floor)|$FLOOR|$(mbps "$FLOOR")|")
rm -rf "$S/floor"
declare -A FIRST
for jobs in 1 4; do
    for who in ours real; do
        timed "first-$who-$jobs" "$who" backup --jobs "$jobs" --immediate-checkpoint pg
        FIRST[$who-$jobs]=$WALL
        ROWS+=("$who first backup, parallel_jobs $jobs|$WALL|$(mbps "$WALL")|$RSS")
        drop_backups "$who"
    done
done

########## 2. ours: second backup with reuse link after one table changed ##########
timed first-ours-link ours backup --jobs 4 --immediate-checkpoint pg
FIRST_LINK=$WALL
psql_ -c "update t3 set v = repeat('y', 100)" -c checkpoint
timed second-ours ours backup --jobs 4 --immediate-checkpoint pg
ids=$(ls "$S/ours/home/pg/base" | sort)
first_id=$(echo "$ids" | head -1); second_id=$(echo "$ids" | tail -1)
added=$(du -sB1 "$S/ours/home/pg/base/$first_id" "$S/ours/home/pg/base/$second_id" | awk 'NR==2{print $1}')
linked=$(find "$S/ours/home/pg/base/$second_id/data" -type f -links +1 | wc -l)
files=$(find "$S/ours/home/pg/base/$second_id/data" -type f | wc -l)
received=$(grep 'rsync: .* files listed' "$S/ours/barman.log" | tail -1 | sed 's/.*rsync: //')
SECOND=$WALL
ROWS+=("ours second backup (reuse link, 1 of 10 tables changed; first took $FIRST_LINK s)|$WALL|$added B added, $linked/$files linked|$RSS")
ROWS+=("  its rsync: $received|||")

########## 3. remote recovery --jobs 4 ##########
barman_ real backup --immediate-checkpoint pg >/dev/null 2>&1
for who in ours real; do
    mkdir -p "$S/rec_$who"; chown postgres: "$S/rec_$who"; chmod 700 "$S/rec_$who"
    timed "recover-$who" "$who" recover --remote-ssh-command "$SSH" --jobs 4 pg latest "$S/rec_$who/pgdata"
    ROWS+=("$who remote recovery --jobs 4|$WALL|$(mbps "$WALL")|$RSS")
    printf -v "REC_$who" '%s' "$WALL"
    rm -rf "$S/rec_$who"
done

########## table ##########
echo "rsync benchmark: SCALE=$SCALE, $((DB_BYTES / 1000000)) MB of databases, loopback ssh, $(nproc) cores"
printf '%-80s %10s %28s %10s\n' "run" "wall s" "MB/s / bytes" "peak RSS MiB"
for r in "${ROWS[@]}"; do IFS='|' read -r a b c d <<<"$r"; printf '%-80s %10s %28s %10s\n' "$a" "$b" "$c" "$d"; done
for jobs in 1 4; do
    awk -v o="${FIRST[ours-$jobs]}" -v r="${FIRST[real-$jobs]}" -v f="$FLOOR" -v j="$jobs" \
        'BEGIN{printf "parallel_jobs %s: ours %.2fx Barman throughput (target >= 1.5), %.2fx the floor wall (target <= 1.2)\n", j, r/o, o/f}'
done
awk -v a="$FIRST_LINK" -v b="$SECOND" 'BEGIN{printf "second backup %.2fx faster than the first (target >= 3)\n", a/b}'
awk -v o="$REC_ours" -v r="$REC_real" 'BEGIN{printf "recovery: ours %.2fx faster than Barman (target >= 1.5)\n", r/o}'
[ "$FAILURES" = 0 ] || { log "some runs FAILED: the ratios above are not meaningful"; exit 1; }
