#!/usr/bin/env bash
# Installs the toolkit: binaries, man pages, cron/logrotate/systemd files and example
# configuration. Usage: packaging/install.sh [--prefix /usr] [--destdir DIR] [--from DIR]
#   --prefix   where bin/ and share/man go (default /usr)
#   --destdir  staging root prepended to every path (for packaging; default none)
#   --from     install already-built binaries from DIR instead of building release ones
# Existing configuration files are never overwritten.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
prefix=/usr destdir="" from=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 3 ;;
  esac
done
bins="barman barman-wal-archive barman-wal-restore"
for extra in barman-receive-wal barman-backup barman-relay barman-ssh-gate; do
  [ -d "bins/$extra" ] && bins="$bins $extra"
done
if [ -z "$from" ]; then
  cargo build --release --workspace --quiet
  from=target/release
fi
root="$destdir"
install -d "$root$prefix/bin" "$root$prefix/share/man/man1" "$root/etc/barman.d" \
  "$root/etc/cron.d" "$root/etc/logrotate.d" "$root/lib/systemd/system"
for b in $bins; do
  install -m 0755 "$from/$b" "$root$prefix/bin/$b"
done
install -m 0644 man/*.1 "$root$prefix/share/man/man1/"
install -m 0644 packaging/cron.d/barman "$root/etc/cron.d/barman"
install -m 0644 packaging/logrotate.d/barman "$root/etc/logrotate.d/barman"
install -m 0644 packaging/systemd/* "$root/lib/systemd/system/"
[ -e "$root/etc/barman.conf" ] || install -m 0644 packaging/etc/barman.conf "$root/etc/barman.conf"
for t in packaging/etc/barman.d/*; do
  install -m 0644 "$t" "$root/etc/barman.d/$(basename "$t")"
done
echo "installed: $bins into $root$prefix/bin; man pages, cron.d, logrotate, systemd units, /etc/barman.conf"
