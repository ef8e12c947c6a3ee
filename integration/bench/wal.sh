#!/usr/bin/env bash
# WAL archive/restore micro-benchmark: our barman-wal-archive / barman-wal-restore (+ our
# server-side `barman`) vs real Barman 3.20.1, pgBackRest and plain cp.
# Run as root. Everything lives in a scratch dir under /tmp and on 127.0.0.1; a trap
# cleans up (sshd instances, PG cluster, prefetch daemons, ssh control masters, files).
# See README.md next to this file.  Env knobs:
#   QUICK=1            smoke run (5 archive segments, 20 restore segments)
#   ARCHIVE_N, RESTORE_N  segment counts (defaults 64 / 200)
#   OUR_BIN            dir with our release binaries (default <repo>/target/release)
#   BARMAN_VENV        real Barman venv (default /opt/barman-venv)
#   KEEP=1             keep the scratch dir (for debugging)
#   RESTORE_IMPLS      which barman-wal-restore to time: "ours real" (default), "ours"
#   SKIP_ARCHIVE=1     no timed archive rows (the restore stores are still filled)
#   ARCHIVE_IMPLS      which barman-wal-archive to time: "ours real" (default), "ours"
#   SSH_CIPHER         cipher of every client's ssh config (all contenders get the same);
#                      default aes128-gcm@openssh.com, "default" keeps OpenSSH's own choice
#   WAL_COMPRESSION    none (default), lz4 or zstd: the same codec for every store (both
#                      catalogues' `compression`, pgBackRest's compress-type), plus the
#                      client-side flag (--lz4/--zstd) of both barman-wal-archive and
#                      --keep-compression of both barman-wal-restore
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUR_BIN=${OUR_BIN:-$REPO/target/release}
VENV=${BARMAN_VENV:-/opt/barman-venv}
PG_BIN=/usr/lib/postgresql/15/bin
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "${QUICK:-0}" = 1 ]; then
    ARCHIVE_N=${ARCHIVE_N:-5}; RESTORE_N=${RESTORE_N:-20}
else
    ARCHIVE_N=${ARCHIVE_N:-64}; RESTORE_N=${RESTORE_N:-200}
fi
NSEG=$(( ARCHIVE_N > RESTORE_N ? ARCHIVE_N : RESTORE_N ))
SSH_CIPHER=${SSH_CIPHER:-aes128-gcm@openssh.com}
WAL_COMPRESSION=${WAL_COMPRESSION:-none}
case $WAL_COMPRESSION in
    none) PGBR_COMPRESS=none; ARCH_FLAGS=(); REST_FLAGS=(); CONF_COMPRESSION="" ;;
    lz4)  PGBR_COMPRESS=lz4; ARCH_FLAGS=(--lz4); REST_FLAGS=(--keep-compression); CONF_COMPRESSION="compression = lz4" ;;
    zstd) PGBR_COMPRESS=zst; ARCH_FLAGS=(--zstd); REST_FLAGS=(--keep-compression); CONF_COMPRESSION="compression = zstd" ;;
    *) echo "WAL_COMPRESSION must be none, lz4 or zstd" >&2; exit 1 ;;
esac
# what the compressed mode adds to each Barman row's note
ANOTE=""; RNOTE=""
if [ "$WAL_COMPRESSION" != none ]; then
    ANOTE="; client ${ARCH_FLAGS[0]}: compressed before sending, stored as is"
    RNOTE="; --keep-compression: stored $WAL_COMPRESSION bytes sent, client decompresses"
fi

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
for f in "$OUR_BIN/barman" "$OUR_BIN/barman-wal-archive" "$OUR_BIN/barman-wal-restore" \
         "$VENV/bin/barman" "$VENV/bin/barman-wal-archive" "$VENV/bin/barman-wal-restore" \
         /usr/sbin/sshd /usr/bin/ssh "$PG_BIN/initdb"; do
    [ -x "$f" ] || die "missing $f (cargo build --release --workspace? integration/setup.sh?)"
done
HAVE_PGBR=0; command -v pgbackrest >/dev/null && HAVE_PGBR=1
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

S=$(mktemp -d /tmp/barman-walbench.XXXXXX)
chmod 755 "$S"
SSHD_PIDS=()
PGDATA=$S/pgdata
cleanup() {
    set +e
    log "cleanup"
    # our detached prefetch daemons (only those whose argv names our scratch dir)
    local p
    for p in $(pgrep -f -- "--prefetch-daemon.*$S" 2>/dev/null) $(pgrep -f -- "$S.*--prefetch-daemon" 2>/dev/null); do
        kill "$p" 2>/dev/null
    done
    # pgbackrest async workers started with our config files
    for p in $(pgrep -f -- "pgbackrest.*$S/" 2>/dev/null); do kill "$p" 2>/dev/null; done
    for d in "$S"/cli-*; do
        [ -f "$d/ssh_config" ] && runuser -u postgres -- /usr/bin/ssh -F "$d/ssh_config" -O exit 127.0.0.1 >/dev/null 2>&1
    done
    [ -f "$PGDATA/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1
    for p in "${SSHD_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    if [ "${KEEP:-0}" = 1 ]; then log "kept $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
# stamp VAR: the time in ns into VAR, without the fork of $(now_ns) inside timed parts
stamp() { printf -v "$1" '%s000' "${EPOCHREALTIME/./}"; }
as_pg() { runuser -u postgres -- env -i HOME=/var/lib/postgresql "$@"; }
as_barman() { runuser -u barman -- env -i HOME=/var/lib/barman "$@"; }

# Copy our binaries so a concurrent `cargo build` cannot swap them mid-run.
mkdir -p "$S/ours-bin"
cp "$OUR_BIN"/{barman,barman-wal-archive,barman-wal-restore} "$S/ours-bin/"
chmod 755 "$S/ours-bin" "$S/ours-bin"/*

########## sshd: one instance per server implementation ##########
mkdir -p "$S/sshd" /run/sshd
ssh-keygen -q -t ed25519 -N '' -C walbench -f "$S/sshd/host_key"
ssh-keygen -q -t ed25519 -N '' -C walbench -f "$S/sshd/client_key"
cp "$S/sshd/client_key.pub" "$S/sshd/authorized_keys"; chmod 644 "$S/sshd/authorized_keys"
chmod 755 "$S/sshd"
declare -A PORT
start_sshd() { # name remote-path-first-dir
    local name=$1 first=$2 port cfg i
    for i in 1 2 3 4 5; do
        port=$(free_port); cfg=$S/sshd/sshd_config.$name
        cat >"$cfg" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $S/sshd/host_key
PidFile $S/sshd/sshd.$name.pid
AuthorizedKeysFile $S/sshd/authorized_keys
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
SetEnv PATH=$first:$SYS_PATH
EOF
        /usr/sbin/sshd -D -e -f "$cfg" >"$S/sshd/sshd.$name.log" 2>&1 &
        local pid=$!
        for _ in $(seq 50); do
            if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
                SSHD_PIDS+=("$pid"); PORT[$name]=$port; return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null
    done
    die "sshd $name did not start: $(cat "$S/sshd/sshd.$name.log")"
}
start_sshd ours "$S/ours-bin"
start_sshd real "$VENV/bin"
log "sshd ours on ${PORT[ours]}, real on ${PORT[real]}"

# client wrapper dirs: cli-<impl>-<fresh|mux>/ssh  (first on PATH of the client process)
make_client() { # impl mux(0/1)
    local impl=$1 mux=$2 d
    d=$S/cli-$impl-$([ "$mux" = 1 ] && echo mux || echo fresh)
    mkdir -p "$d"
    cp "$S/sshd/client_key" "$d/id_ed25519"; chmod 600 "$d/id_ed25519"
    {
        echo "Host *"
        echo "    Port ${PORT[$impl]}"
        echo "    IdentityFile $d/id_ed25519"
        echo "    IdentitiesOnly yes"
        echo "    StrictHostKeyChecking no"
        echo "    UserKnownHostsFile /dev/null"
        echo "    GlobalKnownHostsFile /dev/null"
        echo "    LogLevel ERROR"
        echo "    BatchMode yes"
        [ "$SSH_CIPHER" != default ] && echo "    Ciphers $SSH_CIPHER"
        if [ "$mux" = 1 ]; then
            echo "    ControlMaster auto"
            echo "    ControlPath $d/cm-%C"
            echo "    ControlPersist 60"
        fi
    } >"$d/ssh_config"
    printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$d/ssh_config" >"$d/ssh"
    chmod 755 "$d/ssh"; chown -R postgres: "$d"
}
for impl in ours real; do make_client $impl 0; make_client $impl 1; done

########## barman homes ##########
make_barman() { # impl
    local b=$S/barman-$1
    mkdir -p "$b/home"
    cat >"$b/barman.conf" <<EOF
[barman]
barman_home = $b/home
barman_user = barman
log_file = $b/barman.log
log_level = INFO
configuration_files_directory = $b/conf.d

[pg]
description = walbench
conninfo = host=/tmp dbname=postgres
backup_method = postgres
archiver = on
$CONF_COMPRESSION
EOF
    mkdir -p "$b/conf.d"; touch "$b/barman.log"
    chown -R barman: "$b"; chmod 755 "$b"; chmod 644 "$b/barman.conf"
}
make_barman ours; make_barman real
server_barman() { # impl args...  (run `barman` as the barman user with impl's PATH)
    local impl=$1; shift
    local first=$S/ours-bin; [ "$impl" = real ] && first=$VENV/bin
    as_barman PATH="$first:$SYS_PATH" barman -c "$S/barman-$impl/barman.conf" "$@"
}
# client command runner: impl mode(fresh|mux) cmd args...
client() {
    local impl=$1 mode=$2; shift 2
    local first=$S/ours-bin; [ "$impl" = real ] && first=$VENV/bin
    as_pg PATH="$S/cli-$impl-$mode:$first:$SYS_PATH" "$@"
}
for impl in ours real; do
    out=$(client $impl fresh barman-wal-archive "${ARCH_FLAGS[@]}" -c "$S/barman-$impl/barman.conf" -t 127.0.0.1 pg DUMMY 2>&1) \
        || die "barman-wal-archive --test ($impl) failed: $out"
    log "put-wal --test ($impl): $out"
done

########## WAL segments from a throwaway PG15 cluster ##########
SRC=$S/walsrc; mkdir -p "$SRC/archive_status" "$S/sock"; chown -R postgres: "$SRC" "$S/sock"
mkdir -p "$PGDATA" "$S/pglog"; chown postgres: "$PGDATA" "$S/pglog"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres >"$S/initdb.log" 2>&1 || die "initdb: $(cat "$S/initdb.log")"
PGPORT=$(free_port)
cat >>"$PGDATA/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$S/sock'
fsync = off
synchronous_commit = off
full_page_writes = on
wal_level = replica
archive_mode = on
archive_command = 'cp %p $SRC/%f'
max_wal_size = 4GB
checkpoint_timeout = 1h
EOF
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$S/pglog/pg.log" -w start >/dev/null || die "pg start: $(cat "$S/pglog/pg.log")"
psql_() { as_pg "$PG_BIN/psql" -X -q -h "$S/sock" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
log "generating $NSEG WAL segments"
t0=$(now_ns)
as_pg "$PG_BIN/pgbench" -h "$S/sock" -p "$PGPORT" -U postgres -i -s 5 -q postgres >"$S/pgbench.log" 2>&1 || die "pgbench: $(cat "$S/pgbench.log")"
psql_ -c "create table filler(id int, pad text)" || die psql
nseg() { find "$SRC" -maxdepth 1 -name '0000000100000000000000??' -o -maxdepth 1 -name '000000010000000[0-9A-F]000000??' | wc -l; }
while [ "$(ls "$SRC" | grep -c '^[0-9A-F]\{24\}$')" -lt "$NSEG" ]; do
    psql_ -c "insert into filler select g, md5(g::text)||repeat('x',60) from generate_series(1,120000) g" \
          -c "select pg_switch_wal()" >/dev/null || die "psql insert"
    sleep 0.2
done
sleep 1
mapfile -t SEGS < <(ls "$SRC" | grep '^[0-9A-F]\{24\}$' | sort | head -n "$NSEG")
log "have ${#SEGS[@]} segments (${SEGS[0]}..${SEGS[-1]}) in $(( ($(now_ns)-t0)/1000000 )) ms"

########## pgBackRest stanzas (need the running cluster) ##########
PGBR_NOTE_ASYNC=""
if [ $HAVE_PGBR = 1 ]; then
    for kind in sync async; do
        d=$S/pgbr-$kind; mkdir -p "$d"/{repo,spool,lock,log}
        {
            echo "[global]"
            echo "repo1-path=$d/repo"
            echo "lock-path=$d/lock"
            echo "log-path=$d/log"
            echo "spool-path=$d/spool"
            echo "log-level-console=warn"
            echo "log-level-file=off"
            echo "compress-type=$PGBR_COMPRESS"
            if [ $kind = async ]; then echo "archive-async=y"; echo "process-max=2"; else echo "archive-async=n"; fi
            echo "[demo]"
            echo "pg1-path=$S/pgfake-$kind"
            echo "pg1-socket-path=$S/sock"
            echo "pg1-port=$PGPORT"
        } >"$d/pgbackrest.conf"
        chown -R postgres: "$d"
        as_pg pgbackrest --config="$d/pgbackrest.conf" --stanza=demo --pg1-path="$PGDATA" stanza-create \
            >"$d/stanza.log" 2>&1 || { log "pgbackrest stanza-create $kind failed: $(cat "$d/stanza.log")"; HAVE_PGBR=0; }
    done
fi
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
# pg_wal-like dirs: a fake PGDATA per pgbackrest mode (pg_control + pg_wal/archive_status)
for kind in sync async; do
    f=$S/pgfake-$kind; mkdir -p "$f/global" "$f/pg_wal/archive_status"
    cp "$PGDATA/global/pg_control" "$f/global/"; cp "$PGDATA/PG_VERSION" "$f/"
    for s in "${SEGS[@]:0:$ARCHIVE_N}"; do ln "$SRC/$s" "$f/pg_wal/$s"; : >"$f/pg_wal/archive_status/$s.ready"; done
    chmod 700 "$f"; chown -R postgres: "$f"
done

########## ARCHIVE ##########
declare -a AROWS=() RROWS=()
CALLER=$REPO/integration/bench/pg_caller.sh
cp "$CALLER" "$S/pg_caller.sh"; chmod 755 "$S/pg_caller.sh"
printf '%s\n' "${SEGS[@]:0:$ARCHIVE_N}" >"$S/archive-names"; chmod 644 "$S/archive-names"
# stats FILE N: "p50 p90 max mean wall_per_call fails bad" (ms) from pg_caller's output
stats() {
    local f=$1 n=$2 k i50 i90
    awk '$1!="wall"{printf "%.3f\n", $1/1e6}' "$f" | sort -n >"$f.sorted"
    k=$(wc -l <"$f.sorted"); [ "$k" -gt 0 ] || { echo "n/a n/a n/a n/a n/a 0 0"; return; }
    i50=$(( (k + 1) / 2 )); i90=$(( (k * 9 + 9) / 10 ))
    printf '%s %s %s %s %s %s %s\n' \
        "$(sed -n "${i50}p" "$f.sorted")" "$(sed -n "${i90}p" "$f.sorted")" "$(tail -1 "$f.sorted")" \
        "$(awk '{s+=$1} END{printf "%.1f", s/NR}' "$f.sorted")" \
        "$(awk -v n="$n" '$1=="wall"{printf "%.1f", $2/1e6/n}' "$f")" \
        "$(awk '$1!="wall" && $2!=0' "$f" | wc -l)" "$(awk '$1!="wall" && $3!=1' "$f" | wc -l)"
}
peak_rss() { sort -n "$1" 2>/dev/null | tail -1 | awk '{printf "%.1f", $1/1024}'; }
# Each barman-wal-archive row starts from an empty incoming/ on its server: a row re-sending
# files the previous row stored would time put-wal's identical-duplicate check (no write, no
# fsync) instead of archiving. (pgBackRest's two rows and cp each write into their own.)
fresh_incoming() { find "$S/barman-$1/home/pg/incoming" -mindepth 1 -delete 2>/dev/null; sync; }
# Client-side state a previous row left: prefetch caches, shared ssh connections.
fresh_client() {
    rm -rf /tmp/barman-pg-* 2>/dev/null
    pkill -u postgres -f "barman-ssh-$(id -u postgres)" 2>/dev/null; sleep 0.2
}
# a pg_wal-like directory holding the archive segments (hard links), status markers empty
pgwal_dir() { local f=$S/pgwal-$1; rm -rf "$f"; mkdir -p "$f/archive_status"
    for s in "${SEGS[@]:0:$ARCHIVE_N}"; do ln "$SRC/$s" "$f/$s"; done; chown -R postgres: "$f"; echo "$f"; }
warm_mux() { client "$1" mux ssh barman@127.0.0.1 true >/dev/null 2>&1 || log "mux warmup $1 failed"; }
# bench_archive label mode(backlog|single) impl note line [pg_wal dir]  (line as in archive_command)
bench_archive() {
    local label=$1 mode=$2 impl=$3 note=$4 line=$5 dir=${6:-} out rss first=$S/ours-bin
    [ "$impl" = real ] && first=$VENV/bin
    log "archive: $label / $mode: $line"
    if [ -z "$dir" ]; then dir=$(pgwal_dir "$mode-$RANDOM"); else rm -f "$dir"/archive_status/*; fi
    [ "$mode" = backlog ] && for s in "${SEGS[@]:0:$ARCHIVE_N}"; do : >"$dir/archive_status/$s.ready"; done
    chown -R postgres: "$dir"
    [ "$impl" != none ] && { fresh_incoming "$impl"; fresh_client; }
    out=$S/arch-$RANDOM.out rss=$S/arch-$RANDOM.rss; : >"$rss"; : >"$rss.err"; chown postgres: "$rss" "$rss.err"
    (cd "$dir" && as_pg PATH="$S/cli-$impl-fresh:$first:$SYS_PATH" "$S/pg_caller.sh" archive "$line" "$S/archive-names" "$dir" "$mode" "$rss") >"$out"
    read -r p50 p90 max mean per fails bad <<<"$(stats "$out" "$ARCHIVE_N")"
    [ "$fails" -gt 0 ] && { note="$note; $fails/$ARCHIVE_N FAILED"; log "  FAIL: $(tail -3 "$rss.err" | tr '\n' ' ')"; }
    AROWS+=("$label|$mode|$per|$p50|$p90|$max|$(peak_rss "$rss")|$note")
}

if [ "${SKIP_ARCHIVE:-0}" = 1 ]; then ARCHIVE_N=0; fi
if [ "$ARCHIVE_N" -gt 0 ]; then
    for impl in ${ARCHIVE_IMPLS:-ours real}; do
        name="barman-wal-archive (ours)"; [ $impl = real ] && name="barman-wal-archive (Barman 3.20.1)"
        conf=$S/barman-$impl/barman.conf
        for mode in backlog single; do
            bench_archive "$name, documented line" $mode $impl "no flags, no ssh multiplexing configured$ANOTE" \
                "barman-wal-archive ${ARCH_FLAGS[*]} -c $conf 127.0.0.1 pg %p"
        done
        bench_archive "$name, -p 8" backlog $impl "prefetch cache dir per row$ANOTE" \
            "barman-wal-archive ${ARCH_FLAGS[*]} -c $conf -p 8 127.0.0.1 pg %p"
    done
    if [ $HAVE_PGBR = 1 ]; then
        bench_archive "pgbackrest archive-push sync" single none "archive-async=n, compress-type=$PGBR_COMPRESS, local repo" \
            "pgbackrest --config=$S/pgbr-sync/pgbackrest.conf --stanza=demo archive-push %p" "$S/pgfake-sync/pg_wal"
        for mode in backlog single; do
            rm -rf "$S/pgbr-async/spool/archive" "$S/pgbr-async/repo/archive/demo/"*/0000* 2>/dev/null
            bench_archive "pgbackrest archive-push async" $mode none "archive-async=y process-max=2, compress-type=$PGBR_COMPRESS, local repo" \
                "pgbackrest --config=$S/pgbr-async/pgbackrest.conf --stanza=demo archive-push %p" "$S/pgfake-async/pg_wal"
        done
    else
        AROWS+=("pgbackrest archive-push|-|n/a|||||pgbackrest missing or stanza-create failed")
    fi
    mkdir -p "$S/cpdest"; chown postgres: "$S/cpdest"
    for mode in backlog single; do
        bench_archive "cp + sync" $mode none "cp then sync <file> (fsync), no checksum, no network" \
            "cp %p $S/cpdest/%f && sync $S/cpdest/%f"
    done
fi

########## fill the archives for RESTORE (untimed) ##########
REST_SEGS=("${SEGS[@]:0:$RESTORE_N}")
log "filling archives with ${#REST_SEGS[@]} segments (untimed)"
fill() { # impl
    local impl=$1 from=0
    warm_mux "$impl"
    printf '%s\n' "${REST_SEGS[@]:$from}" | \
        xargs -r -P 4 -I{} runuser -u postgres -- env -i HOME=/var/lib/postgresql \
            PATH="$S/cli-$impl-mux:$([ "$impl" = real ] && echo "$VENV/bin" || echo "$S/ours-bin"):$SYS_PATH" \
            barman-wal-archive "${ARCH_FLAGS[@]}" -c "$S/barman-$impl/barman.conf" 127.0.0.1 pg "$SRC/{}" \
        >>"$S/fill-$impl.log" 2>&1 || log "fill $impl: some barman-wal-archive calls failed: $(tail -3 "$S/fill-$impl.log")"
    server_barman "$impl" archive-wal pg >>"$S/fill-$impl.log" 2>&1 \
        || log "barman archive-wal pg ($impl) failed: $(tail -5 "$S/fill-$impl.log")"
}
fill ours; fill real
if [ $HAVE_PGBR = 1 ]; then
    printf '%s\n' "${REST_SEGS[@]}" | xargs -r -P 4 -I{} runuser -u postgres -- \
        pgbackrest --config="$S/pgbr-sync/pgbackrest.conf" --stanza=demo archive-push "$SRC/{}" \
        >>"$S/fill-pgbr.log" 2>&1 || log "fill pgbackrest failed: $(tail -3 "$S/fill-pgbr.log")"
fi
STORES=""
for impl in ours real; do
    w=$S/barman-$impl/home/pg/wals
    n=$(find "$w" -type f -name '0000000*' 2>/dev/null | grep -c '/[0-9A-F]\{24\}$')
    mib=$(find "$w" -type f -name '0000000*' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END{printf "%.0f", s/1048576}')
    comp=$(awk -F'\t' '{print ($4=="" ? "None" : $4)}' "$w/pg-xlog.db" 2>/dev/null | sort | uniq -c | awk '{printf "%s%s x%s", (NR>1?", ":""), $2, $1}')
    log "$impl catalogue holds $n segments, $mib MiB, xlog.db compression: $comp"
    STORES="$STORES $impl: $n segments $mib MiB (xlog.db compression $comp);"
done
if [ $HAVE_PGBR = 1 ]; then
    STORES="$STORES pgbackrest sync repo: $(du -sm "$S/pgbr-sync/repo/archive" 2>/dev/null | cut -f1) MiB;"
fi

########## RESTORE ##########
# bench_restore label mode impl note line   (line as in restore_command)
# Postgres waits for restore_command, then replays the segment before asking for the next
# one; pg_caller.sh compares each delivered file with the original between calls (cmp + rm
# of a 16 MiB file, standing in for replay). The rate is taken over the calls alone (the
# time Postgres waits); the loop's whole wall-time rate is in the notes. Background work
# (prefetchers) competes for the CPU through both parts.
DAEMON_RSS=$S/daemon-rss
sample_daemons() { # peak VmHWM (KiB) of our prefetch daemons, appended to $DAEMON_RSS
    while :; do
        for p in $(pgrep -f -- "--prefetch-daemon" 2>/dev/null); do
            grep -q "$S\|walrestore" "/proc/$p/cmdline" 2>/dev/null || continue
            awk '/VmHWM/{print $2}' "/proc/$p/status" 2>/dev/null >>"$DAEMON_RSS"
        done
        sleep 0.2
    done
}
bench_restore() {
    local label=$1 mode=$2 impl=$3 note=$4 line=$5 first=$S/ours-bin out rss cwd
    [ "$impl" = real ] && first=$VENV/bin
    log "restore: $label / $mode: $line"
    local dest=$S/restore-dest; rm -rf "$dest"; mkdir -p "$dest"; chown postgres: "$dest"
    [ "$impl" != none ] && fresh_client
    rm -rf /var/tmp/barman-walrestore-pg-* 2>/dev/null
    out=$S/rest-$RANDOM.out rss=$S/rest-$RANDOM.rss; : >"$rss"; : >"$rss.err"; chown postgres: "$rss" "$rss.err"; : >"$DAEMON_RSS"
    cwd=$S/restore-cwd; mkdir -p "$cwd"; chown postgres: "$cwd"
    sample_daemons & local sampler=$!
    (cd "$cwd" && as_pg PATH="$S/cli-$impl-fresh:$first:$SYS_PATH" "$S/pg_caller.sh" restore "$line" "$S/restore-names" "$dest" "$SRC" "$rss") >"$out"
    kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
    read -r p50 p90 max mean per fails bad <<<"$(stats "$out" "${#REST_SEGS[@]}")"
    local calls rate loop; calls=$(awk '$1!="wall"{s+=$1} END{print s}' "$out")
    rate=$(awk -v n=${#REST_SEGS[@]} -v ns="$calls" 'BEGIN{printf "%.1f", n/(ns/1e9)}')
    loop=$(awk -v per="$per" 'BEGIN{printf "%.1f", 1000/per}')
    note="$note; loop with cmp+rm: $loop/s"
    local drss; drss=$(peak_rss "$DAEMON_RSS"); [ -n "$drss" ] && note="$note; prefetch daemon peak RSS $drss MiB"
    [ "$fails" -gt 0 ] && { note="$note; $fails/${#REST_SEGS[@]} FAILED"; log "  FAIL: $(tail -3 "$rss.err" | tr '\n' ' ')"; }
    [ "$bad" -gt "$fails" ] && note="$note; $((bad - fails)) content MISMATCH"
    RROWS+=("$label|$mode|$rate|$p50|$p90|$max|$(peak_rss "$rss")|$note")
    reap_prefetch
}
reap_prefetch() { # wait (max 6 s) then kill our leftover prefetch daemons
    local p i
    for i in $(seq 60); do pgrep -f -- "--prefetch-daemon" >/dev/null || return 0; sleep 0.1; done
    for p in $(pgrep -f -- "--prefetch-daemon"); do kill "$p" 2>/dev/null; done
}
printf '%s\n' "${REST_SEGS[@]}" >"$S/restore-names"; chmod 644 "$S/restore-names"
for impl in ${RESTORE_IMPLS:-ours real}; do
    name="barman-wal-restore (ours)"; [ $impl = real ] && name="barman-wal-restore (Barman 3.20.1)"
    conf=$S/barman-$impl/barman.conf
    mkdir -p "$S/spool-$impl"; chown postgres: "$S/spool-$impl"
    bench_restore "$name, documented line" "no -p" $impl "no flags, no ssh multiplexing configured$RNOTE" \
        "barman-wal-restore ${REST_FLAGS[*]} -c $conf 127.0.0.1 pg %f %p"
    bench_restore "$name, -p 8" "-p 8 --spool-dir" $impl "prefetch 7 ahead$RNOTE" \
        "barman-wal-restore ${REST_FLAGS[*]} -c $conf -p 8 --spool-dir $S/spool-$impl 127.0.0.1 pg %f %p"
done
if [ $HAVE_PGBR = 1 ]; then
    bench_restore "pgbackrest archive-get" "sync" none "archive-async=n, local repo, stored $PGBR_COMPRESS" \
        "pgbackrest --config=$S/pgbr-sync/pgbackrest.conf --stanza=demo --pg1-path=$S/pgfake-sync archive-get %f %p"
    mkdir -p "$S/pgbr-get-spool"; chown postgres: "$S/pgbr-get-spool"
    bench_restore "pgbackrest archive-get" "async" none "archive-async=y process-max=2, spool prefetch (queue-max default), stored $PGBR_COMPRESS" \
        "pgbackrest --config=$S/pgbr-sync/pgbackrest.conf --stanza=demo --pg1-path=$S/pgfake-sync --archive-async --process-max=2 --spool-path=$S/pgbr-get-spool archive-get %f %p"
    sleep 1
else
    RROWS+=("pgbackrest archive-get|-|n/a|||||pgbackrest missing or stanza-create failed")
fi
bench_restore "cp" "local" none "cp from a local dir, no fsync" "cp $SRC/%f %p"

########## report ##########
table() { # title valuehdr rows...
    local title=$1 hdr=$2; shift 2
    echo; echo "== $title"
    { echo "tool|mode|$hdr|notes"; echo "----|----|----|----|----|----|----|-----"; printf '%s\n' "$@"; } | column -t -s'|' -o ' | '
}
echo
echo "Machine: nproc=$(nproc), CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -r)"
echo "Versions: Barman $("$VENV/bin/barman" -v 2>&1 | head -1), $(pgbackrest version 2>/dev/null), PG $("$PG_BIN/postgres" -V | awk '{print $3}'), ours $("$S/ours-bin/barman" --version 2>&1 | head -1)"
echo "WAL_COMPRESSION=$WAL_COMPRESSION: both catalogues ${CONF_COMPRESSION:-without compression}, pgBackRest compress-type=$PGBR_COMPRESS, barman-wal-archive flags: ${ARCH_FLAGS[*]:-(none)}, barman-wal-restore flags: ${REST_FLAGS[*]:-(none)}; cp rows copy the plain files"
echo "Stores after fill:$STORES"
echo "Segments: 16 MiB; archive N=$ARCHIVE_N (wall time of the whole sequence of calls / N), restore N=${#REST_SEGS[@]} (in order; segments/s over the restore calls' wall time, each file compared with cmp between calls); peak RSS: /usr/bin/time %M of each call (the largest)"
echo "Note: shared 2-CPU machine, numbers are noisy; ssh to 127.0.0.1 (no network latency); ssh cipher for every contender: $SSH_CIPHER; load average at start $LOAD0, at end $(cut -d' ' -f1-3 /proc/loadavg)."
table "ARCHIVE (one /bin/sh -c call per segment as postgres, like archive_command; backlog: all .ready up front; single: one at a time)" "ms/segment (wall of the sequence)|p50 ms|p90 ms|max ms|peak RSS MiB" "${AROWS[@]}"
table "RESTORE (one /bin/sh -c call per segment in order as postgres, like restore_command)" "segments/s (calls)|p50 ms|p90 ms|max ms|peak RSS MiB" "${RROWS[@]}"
