#!/usr/bin/env bash
# The fault-injection soak (issue 20): SIGKILLs over barman-wal-archive, put-wal, the cron
# archiver, receive-wal (at random and right after segment switches), barman backup (postgres
# and rsync methods), recover, barman-relay and the passive's cron, barman-cloud-wal-archive
# and barman-cloud-backup (to a local SeaweedFS); ENOSPC on the catalogue (a tmpfs filled by
# a ballast file) while WAL arrives and during a backup, on the passive's catalogue and on a
# recovery destination (an 8 MiB tmpfs); link cuts (network namespaces, veth down) during
# archive over ssh, the relay and cloud uploads; PostgreSQL crashed or restarted mid-stream.
# After each fault the tools run normally and the invariants are checked; prints the table
# (path, faults, WAL lost, manual repairs, ...).
# Run as root (tmpfs mounts, namespaces; PostgreSQL runs as `postgres`, barman as `barman`).
#   bash integration/soak.sh                     # 11 faults on each of the 19 paths
#   SOAK_FAULTS=3 bash integration/soak.sh recover  # paths whose label contains "recover"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash integration/setup.sh >/dev/null
cargo build --workspace --quiet
exec cargo run --quiet -p barman-integration --bin soak -- "$@"
