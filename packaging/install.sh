#!/usr/bin/env bash
# Installs the toolkit: binaries, man pages, shell completions, cron/logrotate/systemd files
# and example configuration.
# Usage: packaging/install.sh [--prefix /usr] [--destdir DIR] [--from DIR] [--component C]
#   --prefix     where bin/ and share/ go (default /usr); every installed file that names a
#                binary (cron.d, systemd units, the authorized_keys example) names it there
#   --destdir    staging root prepended to every path (for packaging; default none)
#   --from       install already-built binaries from DIR instead of building release ones
#   --component  server (backup host: barman, barman-backup, barman-relay, barman-ssh-gate,
#                barman-receive-wal and the system files), client (Postgres host:
#                barman-wal-archive, barman-wal-restore) or all (default)
# Existing configuration files (barman.conf, barman.d/*, cron.d/barman, logrotate.d/barman)
# are never overwritten: the new version is left beside them as <file>.new.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
prefix=/usr destdir="" from="" component=all
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --component) component=$2; shift 2 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 3 ;;
  esac
done
server_bins="barman barman-backup barman-relay barman-ssh-gate barman-receive-wal"
client_bins="barman-wal-archive barman-wal-restore"
case "$component" in
  server) bins=$server_bins ;;
  client) bins=$client_bins ;;
  all) bins="$server_bins $client_bins" ;;
  *) echo "install.sh: unknown component $component (server, client or all)" >&2; exit 3 ;;
esac
if [ -z "$from" ]; then
  cargo build --release --workspace --quiet
  from=target/release
fi
root="$destdir"
# Names the binaries under the prefix (the sources say /usr/bin).
at_prefix() { sed "s|/usr/bin/|$prefix/bin/|g" "$1"; }
# Installs a configuration file unless one is already there (then as <dest>.new).
install_conf() {
  local src=$1 dest=$2
  if [ -e "$dest" ]; then
    dest="$dest.new"
  fi
  at_prefix "$src" >"$dest.tmp" && chmod 0644 "$dest.tmp" && mv "$dest.tmp" "$dest"
}
install -d "$root$prefix/bin" "$root$prefix/share/man/man1"
for b in $bins; do
  install -m 0755 "$from/$b" "$root$prefix/bin/$b"
  [ -e "man/$b.1" ] && install -m 0644 "man/$b.1" "$root$prefix/share/man/man1/"
done
if [ "$component" != client ]; then
  install -d "$root$prefix/share/man/man5" "$root$prefix/share/bash-completion/completions" \
    "$root$prefix/share/zsh/vendor-completions" "$root/etc/barman.d" "$root/etc/cron.d" \
    "$root/etc/logrotate.d" "$root$prefix/lib/systemd/system" "$root$prefix/share/doc/barman-rs"
  [ -e man/barman.5 ] && install -m 0644 man/barman.5 "$root$prefix/share/man/man5/"
  [ -e man/completions/barman.bash ] && install -m 0644 man/completions/barman.bash \
    "$root$prefix/share/bash-completion/completions/barman"
  [ -e man/completions/_barman ] && install -m 0644 man/completions/_barman "$root$prefix/share/zsh/vendor-completions/"
  install_conf packaging/cron.d/barman "$root/etc/cron.d/barman"
  install_conf packaging/logrotate.d/barman "$root/etc/logrotate.d/barman"
  install_conf packaging/etc/barman.conf "$root/etc/barman.conf"
  for t in packaging/etc/barman.d/*; do
    install_conf "$t" "$root/etc/barman.d/$(basename "$t")"
  done
  for u in packaging/systemd/*; do
    at_prefix "$u" >"$root$prefix/lib/systemd/system/$(basename "$u")"
    chmod 0644 "$root$prefix/lib/systemd/system/$(basename "$u")"
  done
  at_prefix packaging/etc/authorized_keys.example >"$root$prefix/share/doc/barman-rs/authorized_keys.example"
fi
echo "installed ($component): $bins into $root$prefix/bin"
