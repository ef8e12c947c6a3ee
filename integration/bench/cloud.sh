#!/usr/bin/env bash
# Cloud tier benchmark on a local SeaweedFS S3 store (single node): ours vs real Barman
# 3.20.1's barman-cloud-* tools, same bucket, same compression, same -J.
#   1. WAL archive: ms per 16 MiB segment, one call per segment driven as PostgreSQL drives
#      archive_command (/bin/sh -c, as postgres).
#   2. Backup of a pgbench database: MB/s of PGDATA, peak RSS.
#   3. Restore of that backup: MB/s, peak RSS.
# Each row's objects are deleted (and SeaweedFS vacuumed) before the next, to keep the disk
# footprint to one copy; pass SCALE=30 where disk is short.
# Run as root after integration/setup.sh and `cargo build --release`. Knobs:
#   SCALE (pgbench scale, default 100), SEGMENTS (default 32), COMPRESSION (flag given to both
#   backup tools and WAL archivers, default --lz4... "none" for none), JOBS (-J, default 4),
#   OUR_BIN (default <repo>/target/release), KEEP=1 keeps the scratch directory.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUR_BIN=${OUR_BIN:-$REPO/target/release}
VENV=${BARMAN_VENV:-/opt/barman-venv}
WEED=${WEED:-/opt/objstores/bin/weed}
PG_BIN=/usr/lib/postgresql/15/bin
SCALE=${SCALE:-100}; SEGMENTS=${SEGMENTS:-32}; JOBS=${JOBS:-4}
COMPRESSION=${COMPRESSION:---lz4}; [ "$COMPRESSION" = none ] && COMPRESSION=""
S=$(mktemp -d /var/tmp/cloud-bench.XXXXXX); chmod 755 "$S"
PORT=$((20000 + RANDOM % 20000)); PGPORT=$((PORT + 7)); MPORT=$((PORT + 1)); VPORT=$((PORT + 2)); FPORT=$((PORT + 3))
cleanup() {
    [ -f "$S/pg/data/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$S/pg/data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${WEED_PID:-}" ] && kill "$WEED_PID" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$S"
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
E="--endpoint-url http://127.0.0.1:$PORT"
mkdir -p "$S/weed"
"$WEED" server -dir="$S/weed" -ip=127.0.0.1 -master.port=$MPORT -volume.port=$VPORT -filer.port=$FPORT \
    -s3 -s3.port=$PORT -volume.max=100 -master.volumeSizeLimitMB=1024 >"$S/weed.log" 2>&1 &
WEED_PID=$!
for _ in $(seq 60); do
    "$VENV/bin/python" - <<PY >/dev/null 2>&1 && break || sleep 1
import boto3; boto3.client("s3", endpoint_url="http://127.0.0.1:$PORT").create_bucket(Bucket="bench")
PY
done
ms() { date +%s%N; }
drop_prefix() { # prefix: delete its objects, then let SeaweedFS reclaim the space
    "$VENV/bin/python" - "$1" <<PY
import sys, boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:$PORT")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=sys.argv[1] + "/"):
    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
    if keys:
        s3.delete_objects(Bucket="bench", Delete={"Objects": keys})
PY
    curl -s "http://127.0.0.1:$MPORT/vol/vacuum?garbageThreshold=0.01" >/dev/null || true
}
peak() { awk '/Maximum resident/ {printf "%.1f", $NF/1024}' "$1"; }

# 1. WAL archive.
mkdir -p "$S/wal"
head -c $((16 << 20)) /dev/urandom >"$S/wal/seed"
for i in $(seq 1 "$SEGMENTS"); do
    name=$(printf "0000000100000000%08X" "$i")
    { head -c $((8 << 20)) "$S/wal/seed"; head -c $((8 << 20)) /dev/zero; } >"$S/wal/$name"
done
archive() { # impl dir prefix label
    local t0 t1 rss=0
    t0=$(ms)
    for f in "$2"/0000*; do
        /usr/bin/time -v -o "$S/time.txt" runuser -u postgres -- env AWS_ACCESS_KEY_ID=bench \
            AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 \
            /bin/sh -c "$1 $E $COMPRESSION s3://bench/$3 pg $f" >/dev/null
        r=$(peak "$S/time.txt"); rss=$(awk -v a="$rss" -v b="$r" 'BEGIN{print (b>a)?b:a}')
    done
    t1=$(ms)
    printf "%-7s WAL archive: %6.1f ms/segment, peak RSS %s MiB\n" "$4" "$(echo "($t1 - $t0) / 1000000 / $SEGMENTS" | bc -l)" "$rss"
    drop_prefix "$3"
}
archive "$OUR_BIN/barman-cloud-wal-archive" "$S/wal" ours-wal ours
archive "$VENV/bin/barman-cloud-wal-archive" "$S/wal" real-wal barman
rm -rf "$S/wal"

# 2. Backup of a pgbench database (archiving to the bucket with our archiver).
mkdir -p "$S/pg" && chown postgres "$S/pg"
runuser -u postgres -- "$PG_BIN/initdb" -D "$S/pg/data" -A trust --no-sync >/dev/null
cat >>"$S/pg/data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$S/pg'
archive_mode = on
archive_command = 'AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench $OUR_BIN/barman-cloud-wal-archive $E $COMPRESSION s3://bench/pgwal pg %p'
max_wal_size = 4GB
CONF
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$S/pg/data" -l "$S/pg/log" -w start >/dev/null
runuser -u postgres -- "$PG_BIN/pgbench" -h "$S/pg" -p "$PGPORT" -i -q -s "$SCALE" postgres >/dev/null 2>&1
SIZE_MB=$(du -sm "$S/pg/data" | cut -f1)
backup() { # impl prefix label
    local t0 t1
    t0=$(ms)
    /usr/bin/time -v -o "$S/time-$3.txt" runuser -u postgres -- env AWS_ACCESS_KEY_ID=bench \
        AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 "$1" $E $COMPRESSION -J "$JOBS" --immediate-checkpoint \
        -h "$S/pg" -p "$PGPORT" s3://bench/"$2" pg >/dev/null 2>"$S/backup-$3.log"
    t1=$(ms)
    printf "%-7s backup : %7.1f MB/s (%s MB PGDATA), peak RSS %s MiB\n" "$3" "$(echo "$SIZE_MB / (($t1 - $t0) / 1000000000)" | bc -l)" "$SIZE_MB" "$(peak "$S/time-$3.txt")"
}

# 3. Restore into a fresh directory.
restore() { # impl prefix label
    local t0 t1 d="$S/restore-$3"
    t0=$(ms)
    /usr/bin/time -v -o "$S/time-r-$3.txt" "$1" $E s3://bench/"$2" pg latest "$d" >/dev/null 2>"$S/restore-$3.log"
    t1=$(ms)
    printf "%-7s restore: %7.1f MB/s, peak RSS %s MiB\n" "$3" "$(echo "$SIZE_MB / (($t1 - $t0) / 1000000000)" | bc -l)" "$(peak "$S/time-r-$3.txt")"
    rm -rf "$d"
}
backup "$OUR_BIN/barman-cloud-backup" ours-bk ours
restore "$OUR_BIN/barman-cloud-restore" ours-bk ours
drop_prefix ours-bk
backup "$VENV/bin/barman-cloud-backup" real-bk barman
restore "$VENV/bin/barman-cloud-restore" real-bk barman
drop_prefix real-bk
drop_prefix pgwal
