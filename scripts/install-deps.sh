#!/usr/bin/env bash
# Installs what shardready needs to build and test, when it is missing
# (Debian/Ubuntu): PostgreSQL 15 server binaries, pg_cron, libclang (for
# pg_query), OpenSSL's headers, a C compiler; then Citus, built from the source CITUS_SOURCE names (a
# directory or a tarball, with shared/citus/build.sh beside it), or, without
# CITUS_SOURCE, a line saying how to get it. Prints what it does; does
# nothing when all is there.
set -euo pipefail

missing=()
# True when any of the patterns matches a file.
have() { for p in "$@"; do compgen -G "$p" >/dev/null && return 0; done; return 1; }
pgbin=$( (pg_config --bindir 2>/dev/null || true) | head -n1)
if [ ! -x "${SHARDREADY_PG_BIN:-$pgbin}/initdb" ] && ! have '/usr/lib/postgresql/*/bin/initdb'; then
  missing+=(postgresql-15)
fi
if ! have '/usr/lib/postgresql/*/lib/pg_cron.so'; then
  missing+=(postgresql-15-cron)
fi
# libclang-dev ships the unversioned libclang.so (and pulls in clang's
# headers, which bindgen needs); the runtime library alone is not enough.
if [ -z "${LIBCLANG_PATH:-}" ] && ! have '/usr/lib/llvm-*/lib/libclang.so'; then
  missing+=(libclang-dev)
fi
# OpenSSL's headers and pkg-config, for TLS with libpq's semantics.
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ! have '/usr/include/openssl/ssl.h' '/usr/include/*/openssl/opensslconf.h'; then
  missing+=(libssl-dev)
fi
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)

# Citus, last: its build needs the server (above) first.
citus() {
  have '/usr/lib/postgresql/*/lib/citus.so' && return 0
  if [ -z "${CITUS_SOURCE:-}" ]; then
    echo "note: Citus is not installed, so the sandbox is plain PostgreSQL and the Citus tests are skipped" >&2
    echo "      (they fail under CI). To build it: make deps CITUS_SOURCE=/path/to/citus-13.2.2.tar.gz" >&2
    echo "      (the source of a Citus release; shared/citus/ beside this checkout has one and its build.sh)" >&2
    return 0
  fi
  local build
  for build in "$(dirname "$CITUS_SOURCE")/build.sh" "$(dirname "$0")/../../shared/citus/build.sh"; do
    [ -f "$build" ] && break
  done
  if [ ! -f "$build" ]; then
    echo "error: CITUS_SOURCE=$CITUS_SOURCE has no build.sh beside it (shared/citus/build.sh)" >&2
    exit 1
  fi
  bash "$build" "$CITUS_SOURCE"
}

if [ ${#missing[@]} -eq 0 ]; then
  citus
  exit 0
fi
echo "installing missing packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "error: need root (or sudo) to install: ${missing[*]}" >&2
    echo "       run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# postgresql-common would create and start a 'main' cluster on port 5432;
# shardready brings its own clusters, so skip that.
if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
  $SUDO mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
citus
