#!/usr/bin/env bash
# Passive-node benchmark: our `barman-relay` against a real Barman 3.20.1 passive, both
# pulling from the same primary backup host A (our `barman`) through the same kind of
# `primary_ssh_command` (ssh to 127.0.0.1).
#
#  (1) copy: one base backup of a `pgbench -i -s SCALE` cluster, taken on A, copied into an
#      empty passive catalogue by `barman-relay --backups pg` (ours) and by
#      `barman sync-info --primary pg` + `barman sync-backup pg ID` (Barman), RUNS times
#      each, alternating: wall time, CPU, peak RSS (/usr/bin/time -v), ssh bytes received
#      (the ssh client's "Transferred:" log line, `-E`), rsync bytes received (ours prints
#      them), plus a plain `rsync -rLKpts` of the same directory as a floor.
#  (2) lag: pgbench for LAG_SECS while PostgreSQL archives to A (our barman-wal-archive ->
#      our put-wal; A's `barman cron` every 3 s) and streams to A (streaming_archiver, so A
#      holds a streaming .partial). Ours runs `barman-relay pg --follow LAG_SECS --interval 2`;
#      Barman's passive runs `barman cron` every 5 s (it pulls complete archived WAL with
#      sync-wals). Once a second the sampler compares pg_current_wal_lsn() with each
#      passive's newest held position: the end of the newest segment in its xlog.db, and for
#      ours also relay.info's passive_position (which counts the relayed streaming .partial).
#      Lag in seconds = how long ago the primary had written the position the passive holds
#      (from a 5 Hz timeline of primary LSN samples).
#
# The lag phase reuses the passive homes of the last copy run (a passive needs a backup
# before it syncs WAL); both are first brought level with A (switch-wal, one sync each).
# Run as root; everything (PG 15, A's Barman home and sshd, two passive homes per run, the
# background loops) lives in a scratch dir /tmp/barman-relaybench.* on 127.0.0.1 and is
# stopped and removed by a trap. Knobs:
#   SCALE       pgbench scale of the backed-up cluster (default 25, ~380 MB; QUICK: 2)
#   LAG_SECS    pgbench duration of the lag phase (default 60; QUICK: 15; 0 skips it)
#   CLIENTS     pgbench clients during the lag phase (default 2)
#   RUNS        copies per tool (default 2; QUICK: 1)
#   COMPRESSION WAL compression on A and both passives (default none; e.g. gzip)
#   DROP_CACHES drop the page cache before each copy (default 1)
#   STRACE=1    also count our relay's fsync calls and their wall time (strace -c -w)
#   QUICK=1     tiny smoke run
#   OUR_BIN     our release binaries (default <repo>/target/release, built first unless NO_BUILD=1)
#   BARMAN_VENV real Barman venv (default /opt/barman-venv)
#   KEEP=1      keep the scratch dir (logs: a/barman.log, p-*/barman.log, *.out, lag.tsv)
# Progress goes to stderr, the table to stdout.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUR_BIN=${OUR_BIN:-$REPO/target/release}
VENV=${BARMAN_VENV:-/opt/barman-venv}
PG_BIN=/usr/lib/postgresql/15/bin
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "${QUICK:-0}" = 1 ]; then
    SCALE=${SCALE:-2}; LAG_SECS=${LAG_SECS:-15}; RUNS=${RUNS:-1}
else
    SCALE=${SCALE:-25}; LAG_SECS=${LAG_SECS:-60}; RUNS=${RUNS:-2}
fi
CLIENTS=${CLIENTS:-2}
COMPRESSION=${COMPRESSION:-}
DROP_CACHES=${DROP_CACHES:-1}
OURS_TOOLS=(barman barman-backup barman-receive-wal barman-relay barman-wal-archive)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
if [ "$OUR_BIN" = "$REPO/target/release" ] && [ "${NO_BUILD:-0}" != 1 ]; then
    log "building our release binaries (NO_BUILD=1 skips)"
    (cd "$REPO" && cargo build --release -q -p barman -p barman-backup -p barman-receive-wal \
        -p barman-relay -p barman-wal-archive) || log "WARNING: cargo build failed; using the binaries already in $OUR_BIN"
fi
for f in "${OURS_TOOLS[@]/#/$OUR_BIN/}" "$VENV/bin/barman" /usr/sbin/sshd /usr/bin/ssh /usr/bin/rsync \
         "$PG_BIN/initdb" "$PG_BIN/pgbench" "$VENV/bin/python"; do
    [ -x "$f" ] || die "missing $f (cargo build --release? integration/setup.sh?)"
done
T_START=$(date +%s)
if [ ! -x /usr/bin/time ]; then apt-get install -y -qq time >/dev/null 2>&1 || die "cannot install time"; fi
"$VENV/bin/python" -c 'import psycopg2' 2>/dev/null || die "$VENV/bin/python lacks psycopg2"

S=$(mktemp -d /tmp/barman-relaybench.XXXXXX)
chmod 755 "$S"
PGDATA=$S/pgdata
BG=()   # background process groups we started (setsid leaders)
cleanup() {
    set +e
    log "cleanup"
    local p
    for p in "${BG[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done
    [ -f "$PGDATA/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1
    # Whatever is left that names the scratch dir (detached barman-receive-wal, Barman's
    # detached sync-wals / check-backup, sshd, ssh): ours, by pid.
    for _ in 1 2 3; do
        for p in $(pgrep -f -- "$S" 2>/dev/null); do [ "$p" != $$ ] && kill "$p" 2>/dev/null; done
        pgrep -f -- "$S" >/dev/null 2>&1 || break
        sleep 1
    done
    for p in $(pgrep -f -- "$S" 2>/dev/null); do [ "$p" != $$ ] && kill -9 "$p" 2>/dev/null; done
    if [ "${KEEP:-0}" = 1 ]; then log "kept $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
as_pg() { runuser -u postgres -- env -i HOME=/var/lib/postgresql "$@"; }
as_barman() { runuser -u barman -- env -i HOME=/var/lib/barman "$@"; }
ours_barman() { # conf args...: our barman as user barman
    local conf=$1; shift
    as_barman PATH="$S/ours-bin:$SYS_PATH" "$S/ours-bin/barman" -c "$conf" "$@"
}
real_barman() { # conf args...: Barman 3.20.1 as user barman
    local conf=$1; shift
    as_barman PATH="$VENV/bin:$SYS_PATH" "$VENV/bin/barman" -c "$conf" "$@"
}
field() { sed -n "s/^\s*$1: //p" "$2"; }          # a /usr/bin/time -v field
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done; }
drop_caches() { [ "$DROP_CACHES" = 1 ] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; true; }

# Our binaries are copied so a concurrent `cargo build` cannot swap them mid-run.
mkdir -p "$S/ours-bin"
for t in "${OURS_TOOLS[@]}"; do cp "$OUR_BIN/$t" "$S/ours-bin/"; done
chmod 755 "$S/ours-bin" "$S/ours-bin"/*

########## host A: our barman home + its sshd ##########
mkdir -p "$S/a/home" "$S/a/bin" "$S/sock" "$S/ssh/host" "$S/ssh/pg" "$S/ssh/barman" "$S/sshlog" "$S/cli-pg" /run/sshd
A_CONF=$S/a/barman.conf
ssh-keygen -q -t ed25519 -N '' -C relaybench -f "$S/ssh/host/host_key"
ssh-keygen -q -t ed25519 -N '' -C relaybench -f "$S/ssh/host/client_key"
cp "$S/ssh/host/client_key.pub" "$S/ssh/host/authorized_keys"; chmod 644 "$S/ssh/host/authorized_keys"
SSHD_PORT=""
for _ in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$S/ssh/host/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $S/ssh/host/host_key
PidFile $S/ssh/host/sshd.pid
AuthorizedKeysFile $S/ssh/host/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers barman
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200
MaxSessions 200
LogLevel ERROR
SetEnv PATH=$S/a/bin:$S/ours-bin:$SYS_PATH
EOF
    setsid /usr/sbin/sshd -D -e -f "$S/ssh/host/sshd_config" >"$S/ssh/host/sshd.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then SSHD_PORT=$port; BG+=("$pid"); disown; break 2; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null
done
[ -n "$SSHD_PORT" ] || die "sshd did not start: $(cat "$S/ssh/host/sshd.log")"
# `barman` as host A runs it: our binary with A's configuration.
printf '#!/bin/sh\nBARMAN_CONFIG_FILE=%s\nexport BARMAN_CONFIG_FILE\nexec %s "$@"\n' \
    "$A_CONF" "$S/ours-bin/barman" >"$S/a/bin/barman"
chmod 755 "$S/a/bin" "$S/a/bin/barman"
# ssh client configs: postgres (archive_command) and barman (the passives' primary_ssh_command).
for u in pg barman; do
    user=$u; [ $u = pg ] && user=postgres
    cp "$S/ssh/host/client_key" "$S/ssh/$u/id_ed25519"; chmod 600 "$S/ssh/$u/id_ed25519"
    level=ERROR; [ $u = barman ] && level=VERBOSE   # VERBOSE: the "Transferred:" byte counts (to -E files)
    cat >"$S/ssh/$u/config" <<EOF
Host *
    Port $SSHD_PORT
    User barman
    IdentityFile $S/ssh/$u/id_ed25519
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    GlobalKnownHostsFile /dev/null
    BatchMode yes
    LogLevel $level
EOF
    chown -R "$user": "$S/ssh/$u"
done
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$S/ssh/pg/config" >"$S/cli-pg/ssh"
chmod 755 "$S/cli-pg" "$S/cli-pg/ssh"
chown barman: "$S/sshlog"
log "sshd for host A on 127.0.0.1:$SSHD_PORT"
primary_ssh() { echo "ssh -F $S/ssh/barman/config -E $S/sshlog/$1.log barman@127.0.0.1"; }
ssh_received() { # total bytes the ssh clients of passive $1 received, and the connection count
    awk '/Transferred: sent/ {n++; gsub(",", "", $0); for (i = 1; i <= NF; i++) if ($i == "received") s += $(i+1)}
         END {printf "%d|%d ssh connections (ssh -E log)", s, n}' "$S/sshlog/$1.log" 2>/dev/null
}

########## PostgreSQL 15 ##########
PGPORT=$(free_port)
mkdir -p "$PGDATA" "$S/pglog"; chown postgres: "$PGDATA" "$S/sock" "$S/pglog"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres --no-sync >"$S/initdb.log" 2>&1 || die "initdb: $(cat "$S/initdb.log")"
cat >>"$PGDATA/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$S/sock'
fsync = off
synchronous_commit = off
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
max_wal_size = 2GB
checkpoint_timeout = 30min
archive_mode = on
archive_command = 'barman-wal-archive 127.0.0.1 pg %p'
EOF
as_pg PATH="$S/cli-pg:$S/ours-bin:$PG_BIN:$SYS_PATH" "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$S/pglog/pg.log" -w start >/dev/null \
    || die "pg start: $(tail -20 "$S/pglog/pg.log")"
psql_() { as_pg "$PG_BIN/psql" -X -At -q -h "$S/sock" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

comp_line() { [ -n "$COMPRESSION" ] && echo "compression = $COMPRESSION"; true; }
write_home() { # dir description lines... (a Barman home for user barman)
    local d=$1; shift
    mkdir -p "$d/home"
    {
        echo "[barman]"
        echo "barman_home = $d/home"
        echo "barman_user = barman"
        echo "log_file = $d/barman.log"
        echo "log_level = INFO"
        echo
        echo "[pg]"
        printf '%s\n' "$@"
        comp_line
    } >"$d/barman.conf"
    touch "$d/barman.log"
    chown -R barman: "$d"; chmod 755 "$d"; chmod 644 "$d/barman.conf"
}
write_home "$S/a" "description = relaybench primary A" \
    "conninfo = host=$S/sock port=$PGPORT user=postgres dbname=postgres" \
    "streaming_conninfo = host=$S/sock port=$PGPORT user=postgres" \
    "backup_method = postgres" "archiver = on" "streaming_archiver = on" \
    "slot_name = barman" "create_slot = auto" "path_prefix = $PG_BIN"
out=$(as_pg PATH="$S/cli-pg:$S/ours-bin:$SYS_PATH" "$S/ours-bin/barman-wal-archive" -t 127.0.0.1 pg DUMMY 2>&1) \
    || die "barman-wal-archive --test failed: $out"
passive_home() { # dir: an empty passive catalogue following A
    local d=$1 name; name=$(basename "$1")
    write_home "$d" "description = relaybench passive $name" "primary_ssh_command = $(primary_ssh "$name")"
}

########## data, host A's cron, one backup ##########
log "pgbench -i -s $SCALE"
t0=$(now)
as_pg "$PG_BIN/pgbench" -h "$S/sock" -p "$PGPORT" -U postgres -i -s "$SCALE" -q postgres >"$S/pgbench-init.log" 2>&1 \
    || die "pgbench -i: $(tail -5 "$S/pgbench-init.log")"
DB_BYTES=$(psql_ -c "select pg_database_size('postgres')")
log "pgbench -i done in $(secs "$t0" "$(now)") s, database $((DB_BYTES / 1048576)) MiB"
# Host A's cron: archiver (archive-wal) and streaming (barman-receive-wal, slot created).
setsid runuser -u barman -- env -i HOME=/var/lib/barman PATH="$S/ours-bin:$SYS_PATH" \
    sh -c "while :; do '$S/ours-bin/barman' -c '$A_CONF' -q cron >>'$S/a/cron.out' 2>&1; sleep 3; done" >/dev/null 2>&1 &
BG+=("$!"); disown
for _ in $(seq 60); do
    [ "$(psql_ -c "select count(*) from pg_stat_replication")" -ge 1 ] && break
    sleep 1
done
log "A streams: $(psql_ -c "select application_name || ' ' || state from pg_stat_replication")"
log "backup on A"
t0=$(now)
ours_barman "$A_CONF" backup --wait --immediate-checkpoint pg >"$S/a/backup.out" 2>&1 \
    || die "barman backup on A: $(tail -20 "$S/a/backup.out")"
BACKUP_ID=$(ours_barman "$A_CONF" list-backups pg | awk 'NR==1{print $2}')
[ -n "$BACKUP_ID" ] || die "no backup on A"
A_BACKUP_DIR=$S/a/home/pg/base/$BACKUP_ID
BACKUP_BYTES=$(du -sb --apparent-size "$A_BACKUP_DIR" | cut -f1)
BACKUP_FILES=$(find "$A_BACKUP_DIR" -type f | wc -l)
log "backup $BACKUP_ID: $((BACKUP_BYTES / 1048576)) MiB, $BACKUP_FILES files, in $(secs "$t0" "$(now)") s"

########## (1) copy ##########
ROWS=()
row() { ROWS+=("$1|$2|$3|${4:-}"); }
copy_stats() { # label timefile tool wall
    local tf=$2 rss cpu
    rss=$(field "Maximum resident set size (kbytes)" "$tf")
    cpu=$(awk -v u="$(field "User time (seconds)" "$tf")" -v s="$(field "System time (seconds)" "$tf")" 'BEGIN{printf "%.1f", u+s}')
    echo "$(awk -v k="$rss" 'BEGIN{printf "%.1f", k/1024}')|$cpu"
}
tree_of() { # dir -> "files bytes" (data files of a backup copy, backup.info excluded)
    find "$1" -type f ! -name backup.info -printf '%s\n' | awk '{n++; s+=$1} END {printf "%d %d", n, s}'
}
A_TREE=$(tree_of "$A_BACKUP_DIR")
backup_status() { # passive dir -> status of the copied backup (from its backup.info)
    local f
    for f in "$1/home/pg/meta/$BACKUP_ID-backup.info" "$1/home/pg/base/$BACKUP_ID/backup.info"; do
        [ -f "$f" ] && { sed -n 's/^status=//p' "$f"; return; }
    done
    echo "no backup.info"
}
copy_ours() { # run
    local d=$S/p-ours-$1 t0 t1 rc
    passive_home "$d"; drop_caches
    log "copy run $1: ours (barman-relay --backups pg)"
    t0=$(now)
    local trace=()
    # STRACE=1: count the relay's fsync calls and their wall time (seccomp filter: cheap).
    [ "${STRACE:-0}" = 1 ] && trace=(strace -f -c -w --seccomp-bpf -e trace=fsync,fdatasync,syncfs -o "$S/strace.ours.$1")
    /usr/bin/time -v -o "$S/time.ours.$1" "${trace[@]}" runuser -u barman -- env -i HOME=/var/lib/barman PATH="$S/ours-bin:$SYS_PATH" \
        "$S/ours-bin/barman-relay" -c "$d/barman.conf" --backups pg 2>&1 | stamp >"$S/copy.ours.$1.out"; rc=${PIPESTATUS[0]}
    t1=$(now)
    local st status rsync_bytes
    st=$(copy_stats x "$S/time.ours.$1")
    status=$(backup_status "$d")
    rsync_bytes=$(sed -n 's/.* \([0-9]*\) bytes received in .*/\1/p' "$S/copy.ours.$1.out" | tail -1)
    local mbytes; mbytes=$(sed -n 's/.*match backup_manifest (\([0-9]*\) bytes checksummed).*/\1/p' "$S/copy.ours.$1.out" | tail -1)
    local note="exit $rc, $status"
    [ "$(tree_of "$d/home/pg/base/$BACKUP_ID")" = "$A_TREE" ] || note="$note, TREE DIFFERS from A"
    [ $rc -ne 0 ] && log "ours failed: $(tail -5 "$S/copy.ours.$1.out")"
    row "ours: barman-relay --backups" "run $1 wall s" "$(secs "$t0" "$t1")" "$note"
    row "ours: barman-relay --backups" "run $1 CPU s (user+sys, with rsync/ssh)" "${st#*|}"
    row "ours: barman-relay --backups" "run $1 peak RSS MiB" "${st%|*}" "largest process of the tree"
    row "ours: barman-relay --backups" "run $1 ssh bytes received" "$(ssh_received "p-ours-$1" | cut -d'|' -f1)" "$(ssh_received "p-ours-$1" | cut -d'|' -f2)"
    row "ours: barman-relay --backups" "run $1 rsync bytes received" "${rsync_bytes:-n/a}" "relay's rsync --stats (backup tree); manifest check read ${mbytes:-?} bytes"
    if [ -s "$S/strace.ours.$1" ]; then
        row "ours: barman-relay --backups" "run $1 fsync calls / their wall s" \
            "$(awk '$NF == "total" {print $(NF-1) " / " $2}' "$S/strace.ours.$1")" "strace -c -w (STRACE=1; the tracing slows this run's rsync)"
    fi
    # phases from the time stamps of its output lines
    local tstart tver tdone
    tstart=$(awk '/Starting copy of backup/ {print $1; exit}' "$S/copy.ours.$1.out")
    tver=$(awk '/files match backup_manifest/ {print $1; exit}' "$S/copy.ours.$1.out")
    tdone=$(awk '/ copied: / {print $1; exit}' "$S/copy.ours.$1.out")
    if [ -n "$tstart" ] && [ -n "$tver" ] && [ -n "$tdone" ]; then
        row "ours: barman-relay --backups" "run $1 phases s" \
            "$(secs "$t0" "$tstart") + $(secs "$tstart" "$tver") + $(secs "$tver" "$tdone") + $(secs "$tdone" "$t1")" \
            "start+sync-info / rsync+manifest check / syncfs + backup WAL rsync (16 MiB; Barman's sync-backup copies no WAL; the keep annotation rides in the main rsync) + check-backup / exit"
    fi
    cut -d' ' -f2- "$S/copy.ours.$1.out" | grep 'backup_manifest\|copied:' | sed 's/^/    ours: /' >&2
}
copy_real() { # run
    local d=$S/p-real-$1 t0 tm t1 rc
    passive_home "$d"; drop_caches
    log "copy run $1: Barman 3.20.1 (sync-info --primary, sync-backup)"
    t0=$(now)
    /usr/bin/time -v -o "$S/time.real.$1" runuser -u barman -- env -i HOME=/var/lib/barman PATH="$VENV/bin:$SYS_PATH" \
        sh -c "'$VENV/bin/barman' -c '$d/barman.conf' sync-info --primary pg >/dev/null && date +%s.%N >'$d/mid' && \
               '$VENV/bin/barman' -c '$d/barman.conf' sync-backup pg '$BACKUP_ID'" >"$S/copy.real.$1.out" 2>&1; rc=$?
    t1=$(now)
    tm=$(cat "$d/mid" 2>/dev/null || echo "$t0")
    local st status
    st=$(copy_stats x "$S/time.real.$1")
    status=$(backup_status "$d")
    local note="exit $rc, $status"
    [ "$(tree_of "$d/home/pg/base/$BACKUP_ID")" = "$A_TREE" ] || note="$note, TREE DIFFERS from A"
    [ $rc -ne 0 ] && log "Barman failed: $(tail -5 "$S/copy.real.$1.out")"
    row "Barman 3.20.1: sync-info --primary + sync-backup" "run $1 wall s" "$(secs "$t0" "$t1")" "$note; sync-backup alone $(secs "$tm" "$t1") s"
    row "Barman 3.20.1: sync-info --primary + sync-backup" "run $1 CPU s (user+sys, with rsync/ssh)" "${st#*|}"
    row "Barman 3.20.1: sync-info --primary + sync-backup" "run $1 peak RSS MiB" "${st%|*}" "largest process of the tree"
    row "Barman 3.20.1: sync-info --primary + sync-backup" "run $1 ssh bytes received" "$(ssh_received "p-real-$1" | cut -d'|' -f1)" "$(ssh_received "p-real-$1" | cut -d'|' -f2)"
}
copy_floor() { # run: plain rsync of the same tree, same ssh, no fsync, no verification
    local d=$S/floor-$1 t0 t1 rc
    mkdir -p "$d"; chown barman: "$d"; drop_caches
    t0=$(now)
    /usr/bin/time -v -o "$S/time.floor.$1" runuser -u barman -- env -i HOME=/var/lib/barman PATH="$SYS_PATH" \
        rsync -e "$(primary_ssh "floor-$1")" -s -rLKpts --stats --no-human-readable " :$A_BACKUP_DIR/" "$d/" \
        >"$S/copy.floor.$1.out" 2>&1; rc=$?
    t1=$(now)
    local st; st=$(copy_stats x "$S/time.floor.$1")
    row "plain rsync -rLKpts (floor)" "run $1 wall s" "$(secs "$t0" "$t1")" "exit $rc; no fsync, no verification, no catalogue"
    row "plain rsync -rLKpts (floor)" "run $1 CPU s (user+sys, with ssh)" "${st#*|}"
    row "plain rsync -rLKpts (floor)" "run $1 rsync bytes received" "$(sed -n 's/^Total bytes received: \([0-9]*\).*/\1/p' "$S/copy.floor.$1.out")"
    # What the extra steps of ours cost on the same copy: a checksum check of every file
    # against backup_manifest (pg_verifybackup, hot cache as in the relay), and fsync.
    t0=$(now); "$PG_BIN/pg_verifybackup" -n -q "$d/data" >"$S/verify.$1.out" 2>&1; rc=$?; t1=$(now)
    row "pg_verifybackup -n on that copy" "run $1 wall s" "$(secs "$t0" "$t1")" "exit $rc; manifest checksum cost estimate (hot cache)"
    t0=$(now)
    python3 -c 'import os, sys
for root, dirs, files in os.walk(sys.argv[1]):
    for n in files + ["."]:
        fd = os.open(os.path.join(root, n), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)' "$d"
    t1=$(now)
    row "fsync of every file and dir of that copy" "run $1 wall s" "$(secs "$t0" "$t1")" "per-file fsync cost, for reference (the relay makes the copy durable with one syncfs; Barman not at all)"
    rm -rf "$d"
}
t0=$(now)
for _ in 1 2 3 4 5; do as_barman PATH="$SYS_PATH" sh -c "$(primary_ssh handshake) true" </dev/null; done
row "ssh to A (fresh connection, \`true\`)" "mean wall s per call" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", (b-a)/5}')" "each extra ssh call of a copy costs about this"
for run in $(seq "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then copy_ours "$run"; copy_real "$run"; else copy_real "$run"; copy_ours "$run"; fi
    copy_floor "$run"
done

########## (2) WAL lag under pgbench ##########
cat >"$S/sampler.py" <<'PYEOF'
"""Samples the primary's WAL position (5 Hz) and each passive's held position (1 Hz)."""
import json, math, os, sys, time
import psycopg2

sock, port, secs, ours_home, real_home, a_home, out = sys.argv[1:8]
secs = float(secs)
SEG = 16 * 1024 * 1024

def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)

def xlog_end(home):
    """End position of the newest plain segment listed in <home>/pg/wals/pg-xlog.db."""
    best = None
    try:
        with open(os.path.join(home, "pg", "wals", "pg-xlog.db")) as f:
            for line in f:
                name = line.split("\t", 1)[0]
                if len(name) == 24 and all(c in "0123456789ABCDEF" for c in name) and (best is None or name > best):
                    best = name
    except OSError:
        return 0
    if best is None:
        return 0
    return (int(best[8:16], 16) << 32) + int(best[16:24], 16) * SEG + SEG

def relay_pos(home):
    try:
        with open(os.path.join(home, "pg", "relay.info")) as f:
            return int(json.load(f).get("passive_position", 0))
    except (OSError, ValueError):
        return 0

conn = psycopg2.connect(host=sock, port=int(port), user="postgres", dbname="postgres")
conn.autocommit = True
cur = conn.cursor()
timeline, samples = [], []
t0 = time.time()
next_sample = t0 + 1.0
while True:
    cur.execute("select pg_current_wal_lsn()::text, coalesce((select write_lsn::text from pg_stat_replication limit 1), '0/0')")
    cur_lsn, a_stream = cur.fetchone()
    t = time.time()
    timeline.append((t, lsn(cur_lsn)))
    if t >= next_sample:
        ours_seg = xlog_end(ours_home)
        samples.append({
            "t": t, "primary": lsn(cur_lsn),
            "ours": max(ours_seg, relay_pos(ours_home)), "ours_seg": ours_seg,
            "real": xlog_end(real_home),
            "a_archive": xlog_end(a_home), "a_stream": lsn(a_stream),
        })
        next_sample += 1.0
    if t - t0 >= secs:
        break
    time.sleep(max(0.0, min(0.2, next_sample - time.time())))

def reached_at(pos):
    """When the primary's position first reached pos (linear between timeline samples)."""
    prev = None
    for t, l in timeline:
        if l >= pos:
            if prev is None or l == prev[1]:
                return t, pos < l
            return prev[0] + (pos - prev[1]) / (l - prev[1]) * (t - prev[0]), False
        prev = (t, l)
    return None, False

def pct(vals, p):
    """Nearest-rank percentile."""
    v = sorted(vals)
    return v[min(len(v), max(1, math.ceil(p / 100.0 * len(v)))) - 1]

with open(out, "w") as f:
    f.write("t\tprimary\tours\tours_seg\treal\ta_archive\ta_stream\n")
    for s in samples:
        f.write("%.3f\t%d\t%d\t%d\t%d\t%d\t%d\n" % (s["t"], s["primary"], s["ours"], s["ours_seg"], s["real"], s["a_archive"], s["a_stream"]))

labels = [
    ("ours", "ours: barman-relay --follow (segments + relayed .partial)"),
    ("ours_seg", "ours: barman-relay --follow (complete segments only)"),
    ("real", "Barman 3.20.1: cron every 5 s (sync-wals)"),
    ("a_archive", "context: host A archive (xlog.db)"),
    ("a_stream", "context: host A streaming (write_lsn as its status messages report it)"),
]
generated = timeline[-1][1] - timeline[0][1]
dur = timeline[-1][0] - timeline[0][0]
print("lag sampler|WAL written during the phase|%d MiB|%.1f MiB/s over %.0f s, %d samples at 1 Hz, primary LSN at 5 Hz"
      % (generated / 1048576, generated / 1048576 / max(dur, 0.001), dur, len(samples)))
for key, label in labels:
    lb, ls, lower = [], [], 0
    for s in samples:
        pos = s[key]
        lb.append(max(0, s["primary"] - pos))
        if pos >= s["primary"]:
            ls.append(0.0)
            continue
        at, before_start = reached_at(pos)
        if at is None:
            ls.append(0.0)
        else:
            lower += before_start
            ls.append(max(0.0, s["t"] - at))
    note = "%d samples held a position older than the first primary sample (seconds are a lower bound)" % lower if lower else ""
    mib = lambda b: "%.1f MiB" % (b / 1048576)
    print("%s|lag bytes p50 / p95 / max|%s / %s / %s|%s" % (label, mib(pct(lb, 50)), mib(pct(lb, 95)), mib(max(lb)), note))
    print("%s|lag seconds p50 / p95 / max|%.1f / %.1f / %.1f|" % (label, pct(ls, 50), pct(ls, 95), max(ls)))
PYEOF
LAG_ROWS=(); TPS=""; OURS_WARN=0; OURS_PASSES=0; REAL_SYNCS=0
if [ "$LAG_SECS" -gt 0 ]; then
    PO=$S/p-ours-$RUNS; PR=$S/p-real-$RUNS
    log "lag phase: bringing both passives up to date first"
    last=$(psql_ -c "select pg_walfile_name(pg_current_wal_lsn())")
    psql_ -c "select pg_switch_wal()" >/dev/null
    for _ in $(seq 60); do
        a=$(psql_ -c "select coalesce(last_archived_wal, '') from pg_stat_archiver")
        [ -n "$a" ] && [[ ! "$a" < "$last" ]] && break; sleep 1
    done
    for _ in $(seq 30); do
        grep -q "^$last" "$S/a/home/pg/wals/pg-xlog.db" 2>/dev/null && break; sleep 1
    done
    as_barman PATH="$S/ours-bin:$SYS_PATH" "$S/ours-bin/barman-relay" -c "$PO/barman.conf" --wals pg >"$S/lag.ours.pre.out" 2>&1 \
        || log "ours pre-sync: $(tail -3 "$S/lag.ours.pre.out")"
    { real_barman "$PR/barman.conf" sync-info --primary pg >/dev/null && real_barman "$PR/barman.conf" sync-wals pg; } \
        >"$S/lag.real.pre.out" 2>&1 || log "Barman pre-sync: $(tail -3 "$S/lag.real.pre.out")"
    log "lag phase: pgbench -c $CLIENTS for $LAG_SECS s; ours --follow, Barman cron every 5 s"
    "$VENV/bin/python" "$S/sampler.py" "$S/sock" "$PGPORT" "$((LAG_SECS + 2))" "$PO/home" "$PR/home" "$S/a/home" "$S/lag.tsv" \
        >"$S/lag.rows" 2>"$S/sampler.err" &
    SAMPLER=$!
    sleep 1
    setsid runuser -u barman -- env -i HOME=/var/lib/barman PATH="$S/ours-bin:$SYS_PATH" \
        "$S/ours-bin/barman-relay" -c "$PO/barman.conf" pg --follow "$((LAG_SECS + 5))" --interval 2 >"$S/lag.ours.out" 2>&1 </dev/null &
    BG+=("$!"); RELAY_PID=$!; disown
    setsid runuser -u barman -- env -i HOME=/var/lib/barman PATH="$VENV/bin:$SYS_PATH" \
        sh -c "while :; do '$VENV/bin/barman' -c '$PR/barman.conf' cron >>'$PR/lag.out' 2>&1; sleep 5; done" >/dev/null 2>&1 &
    BG+=("$!"); REALCRON_PID=$!; disown
    as_pg "$PG_BIN/pgbench" -h "$S/sock" -p "$PGPORT" -U postgres -n -c "$CLIENTS" -j 1 -T "$LAG_SECS" postgres \
        >"$S/pgbench-lag.log" 2>&1 || log "pgbench: $(tail -3 "$S/pgbench-lag.log")"
    wait "$SAMPLER" || log "sampler failed: $(tail -5 "$S/sampler.err")"
    kill -TERM -- "-$REALCRON_PID" 2>/dev/null
    kill -TERM -- "-$RELAY_PID" 2>/dev/null
    TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$S/pgbench-lag.log" | head -1)
    mapfile -t LAG_ROWS <"$S/lag.rows"
    OURS_WARN=$(cat "$S/lag.ours.out" 2>/dev/null | grep -c 'WARNING')
    OURS_PASSES=$(cat "$S/lag.ours.out" 2>/dev/null | grep -c 'Copied .* WAL files')
    REAL_SYNCS=$(cat "$PR/lag.out" 2>/dev/null | grep -c 'Started copy of WAL files')
fi

########## report ##########
echo
echo "Machine: nproc=$(nproc), CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -r); shared with other jobs, so timings are noisy"
echo "Everything on one host: PostgreSQL 15, host A (our barman, sshd on 127.0.0.1:$SSHD_PORT), both passives pulling over loopback ssh"
echo "  primary_ssh_command (both passives) = ssh -F <cfg> -E <log> barman@127.0.0.1 (a fresh ssh per call, no ControlMaster)"
echo "Versions: Barman $("$VENV/bin/barman" -v 2>&1 | head -1), PG $("$PG_BIN/postgres" -V | awk '{print $3}'), ours $("$S/ours-bin/barman-relay" --version 2>&1 | head -1), $(rsync --version | head -1 | awk '{print $1, $3}')"
echo "Backup $BACKUP_ID on A: pgbench scale $SCALE, database $((DB_BYTES / 1048576)) MiB, backup $((BACKUP_BYTES / 1048576)) MiB in $BACKUP_FILES files; WAL compression ${COMPRESSION:-none}; page cache dropped before each copy: $([ "$DROP_CACHES" = 1 ] && echo yes || echo no)"
[ "$LAG_SECS" -gt 0 ] && echo "Lag phase: pgbench -c $CLIENTS -j 1 -T $LAG_SECS (tps ${TPS:-n/a}); ours = one barman-relay pg --follow $((LAG_SECS + 5)) --interval 2 ($OURS_PASSES passes copied WAL, $OURS_WARN warnings); Barman = barman cron every 5 s ($REAL_SYNCS sync-wals started)"
echo "Total bench time: $(( $(date +%s) - T_START )) s"
echo
{
    echo "tool|metric|value|notes"
    echo "----|------|-----|-----"
    printf '%s\n' "${ROWS[@]}" "${LAG_ROWS[@]}"
} | column -t -s'|' -o ' | '
