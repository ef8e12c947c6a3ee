#!/usr/bin/env bash
# The demo in one command: provision the machine (idempotent), build, run.
# Must run as root: PostgreSQL runs as the `postgres` OS user, barman as `barman`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash integration/setup.sh
cargo build --workspace --quiet
exec cargo run --quiet -p barman-integration --bin demo
