#!/usr/bin/env bash
# Builds the Debian packages from the workspace with dpkg-deb:
#   barman-rs      the backup host: barman, barman-backup, barman-relay, barman-ssh-gate,
#                  barman-receive-wal; the `barman` user, /var/lib/barman (0700) and
#                  /var/log/barman; conffiles /etc/barman.conf, /etc/barman.d/*,
#                  /etc/cron.d/barman, /etc/logrotate.d/barman; systemd units; man pages,
#                  barman.5, bash and zsh completion
#   barman-rs-cli  the Postgres host: barman-wal-archive, barman-wal-restore
# Both conflict with Debian's own barman / barman-cli, which ship the same commands.
# Usage: packaging/deb/build.sh [--from DIR] [--out DIR] [--version V]
#   --from     already-built binaries (default: cargo build --release, target/release)
#   --out      where the .deb files go (default: target/debian)
#   --version  package version (default: the workspace's)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ws=$(cd "$here/../.." && pwd)
from="" out="$ws/target/debian" version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    *) echo "build.sh: unknown option $1" >&2; exit 3 ;;
  esac
done
[ -n "$version" ] || version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ws/Cargo.toml" | head -1)
if [ -z "$from" ]; then
  (cd "$ws" && cargo build --release --workspace --quiet)
  from="$ws/target/release"
fi
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"

# package NAME COMPONENT DESCRIPTION CONTROL-EXTRA
package() {
  local name=$1 component=$2 description=$3 extra=$4 root="$stage/$1"
  bash "$ws/packaging/install.sh" --prefix /usr --destdir "$root" --from "$from" --component "$component" >/dev/null
  # As dh_strip: no debug symbols in the package.
  strip --strip-unneeded "$root"/usr/bin/*
  install -d -m 0755 "$root/DEBIAN"
  local size
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: barman-rs developers <barman-rs@localhost>"
    echo "Installed-Size: $size"
    echo "Section: database"
    echo "Priority: optional"
    printf '%s\n' "$extra"
    echo "Description: $description"
  } >"$root/DEBIAN/control"
  if [ -d "$root/etc" ]; then
    (cd "$root" && find etc -type f | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
  fi
  for script in postinst postrm; do
    if [ -e "$here/$name.$script" ]; then
      install -m 0755 "$here/$name.$script" "$root/DEBIAN/$script"
    fi
  done
  dpkg-deb -Zgzip --root-owner-group --build "$root" "$out/${name}_${version}_${arch}.deb" >/dev/null
  echo "$out/${name}_${version}_${arch}.deb"
}

package barman-rs server "PostgreSQL backup and recovery manager (Barman 3.20 compatible, backup host)
 The backup host side of a Rust reimplementation of Barman 3.20.1: same configuration
 files, catalogue, command lines and exit codes." \
  "Depends: adduser, libc6 (>= 2.36)
Recommends: rsync, openssh-client, barman-rs-cli
Conflicts: barman, barman-cli
Replaces: barman"
package barman-rs-cli client "Barman 3.20 compatible WAL archive and restore helpers (Postgres host)
 barman-wal-archive (archive_command) and barman-wal-restore (restore_command) of a Rust
 reimplementation of Barman 3.20.1's barman-cli." \
  "Depends: openssh-client, libc6 (>= 2.36)
Conflicts: barman-cli
Replaces: barman-cli"
