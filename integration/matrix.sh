#!/usr/bin/env bash
# The version matrix (issue 19): on each PostgreSQL major given (default 13 14 15 16 17 18),
# archive with barman-wal-archive, stream with barman receive-wal, check/status/show-servers,
# take a base backup (barman backup, postgres method), recover to a target time, start the
# same major on the result and compare the rows exactly; prints a table of results.
# Run as root: PostgreSQL runs as `postgres`, barman as `barman`.
#   bash integration/matrix.sh            # all six
#   bash integration/matrix.sh 13 18      # some
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash integration/setup.sh >/dev/null
cargo build --workspace --quiet
exec cargo run --quiet -p barman-integration --bin matrix -- "$@"
