# Shared pieces of the benchmarks that compare our `barman` with real Barman 3.20.1 on a local
# PostgreSQL (sourced by backup.sh, recover.sh, incremental.sh; bash, set -u safe):
# logging, the root check, the release build of our binaries (unless NO_BUILD=1 or OUR_BIN
# points elsewhere), timing helpers, commands as the `postgres` OS user (PG_BIN first on
# PATH), the page-cache drop and the copy of our binaries into the scratch dir (so a
# concurrent `cargo build` cannot swap them mid-run).
# Expects REPO, OUR_BIN and PG_BIN to be set by the caller.

SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
AS_PG=(runuser -u postgres -- env -i HOME=/var/lib/postgresql)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
require_root() { [ "$(id -u)" -eq 0 ] || die "run as root"; }

# build_ours [strict]: cargo build --release of barman and barman-backup when OUR_BIN is
# the default; a failure is fatal with "strict", else the binaries already there are used.
build_ours() {
    if [ "$OUR_BIN" = "$REPO/target/release" ] && [ "${NO_BUILD:-0}" != 1 ]; then
        log "building our release binaries (NO_BUILD=1 skips)"
        if ! (cd "$REPO" && cargo build --release -q -p barman -p barman-backup); then
            [ "${1:-}" = strict ] && die "cargo build failed"
            log "WARNING: cargo build failed; using the binaries already in $OUR_BIN"
        fi
    fi
}

# require_exec FILE...: each must be executable.
require_exec() {
    local f
    for f in "$@"; do [ -x "$f" ] || die "missing $f (cargo build --release? integration/setup.sh?)"; done
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a/b; else print "n/a" }'; }
as_pg() { "${AS_PG[@]}" PATH="$PG_BIN:$SYS_PATH" "$@"; }
# The page cache dropped (DROP_CACHES=0 skips), dirty pages written first.
drop_caches() { [ "${DROP_CACHES:-1}" = 1 ] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; true; }

# copy_ours DIR: our barman and barman-backup copied into DIR/ours-bin.
copy_ours() {
    mkdir -p "$1/ours-bin"
    cp "$OUR_BIN/barman" "$OUR_BIN/barman-backup" "$1/ours-bin/"
    chmod 755 "$1/ours-bin" "$1/ours-bin"/*
}
