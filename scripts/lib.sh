# Shared helpers for scripts/demo and scripts/test (sourced, not run).

# Installs what building the workspace needs on a fresh Debian machine:
# cmake and a C compiler (pingora's zlib-ng, ring and zstd build C code).
ensure_build_deps() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "==> installing build dependencies: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "error: ${missing[*]} missing and not root; install them and run again" >&2
      return 1
    fi
  fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed (Rust stable via rustup is expected)" >&2
    return 1
  fi
}

# Fails at once, with the figures, when the disk holding target/ has less
# free space than a full run needs (TWINPORT_MIN_FREE_GIB, default below:
# a clean clone's peak use of target/, the fuzz build and the vendored
# crates' tests, measured in ARCHITECTURE.md's "Disk" paragraph, with room
# to spare). Without it a full disk shows up half an hour later as a
# linker's bus error.
ensure_disk_space() {
  local need=${TWINPORT_MIN_FREE_GIB:-8}
  mkdir -p target
  local free_kib
  free_kib=$(df -Pk target | awk 'NR==2 { print $4 }')
  local free_gib=$((free_kib / 1024 / 1024))
  echo "==> disk: ${free_gib} GiB free under target/ (a full run needs about ${need} GiB)"
  if [ "$free_gib" -lt "$need" ]; then
    echo "error: only ${free_gib} GiB free on the disk holding $PWD/target;" \
      "the build and tests need about ${need} GiB. Free some space" \
      "(old target/ directories, /tmp) or set TWINPORT_MIN_FREE_GIB." >&2
    df -h target >&2
    return 1
  fi
}

# What the tests need beyond the build: Debian's headless Chromium and its
# WebDriver (the status-page test), curl, and Debian's Prometheus with
# promtool (the dashboards' rule checks and the real-Prometheus test),
# Ansible with ansible-lint, keepalived (its config check) and
# systemd-analyze (the unit checks) for the Ansible tests; keepalived,
# iproute2 and nftables for the gateway pair's tests on network namespaces
# of their own (chaos-tests/tests/pair.rs).
ensure_test_deps() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v ansible-playbook >/dev/null 2>&1 || missing+=(ansible)
  command -v ansible-lint >/dev/null 2>&1 || missing+=(ansible-lint)
  command -v keepalived >/dev/null 2>&1 || missing+=(keepalived)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "==> installing test dependencies: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
}

# cargo-deny, from crates.io, for the dependency policy (deny.toml).
ensure_cargo_deny() {
  if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "==> installing cargo-deny"
    cargo install --locked cargo-deny
  fi
}

# A PostgreSQL server for the tests. TWINPORT_POSTGRES, if set, names one;
# else the machine's at 127.0.0.1:5432 (trust auth, database test) if it
# answers; else a private cluster of our own from Debian's packages
# (installed if missing) on a free loopback port under target/pg, stopped
# when the calling script exits (TWINPORT_PRIVATE_POSTGRES=1: that one even
# where the machine has a server). Exports TWINPORT_POSTGRES either way: the
# tests that need PostgreSQL fail without one (never skip silently).
ensure_postgres() {
  if [ -n "${TWINPORT_POSTGRES:-}" ]; then
    echo "==> PostgreSQL: $TWINPORT_POSTGRES (TWINPORT_POSTGRES)"
    return 0
  fi
  if [ "${TWINPORT_PRIVATE_POSTGRES:-}" != 1 ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    export TWINPORT_POSTGRES=postgres://postgres@127.0.0.1:5432/test
    echo "==> PostgreSQL: the machine's at 127.0.0.1:5432"
    return 0
  fi
  echo "==> PostgreSQL: starting a private server (Debian's packages; none at 127.0.0.1:5432, or TWINPORT_PRIVATE_POSTGRES=1)"
  if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q postgresql
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  local data="$PWD/target/pg/data"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$data"
  mkdir -p "$data"
  # initdb refuses root: the cluster belongs to the postgres user then.
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres:postgres "$PWD/target/pg"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -A trust -U postgres -D "$data" >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$data" -w -t 60 -l "$data/server.log" \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $data -c fsync=off -c max_connections=300" start >/dev/null
  TWINPORT_PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$data" -m immediate stop)
  trap 'stop_postgres' EXIT
  "${as[@]}" "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE test" >/dev/null
  export TWINPORT_POSTGRES="postgres://postgres@127.0.0.1:$port/test"
  echo "==> PostgreSQL: private server at 127.0.0.1:$port ($data)"
}

stop_postgres() {
  if [ -n "${TWINPORT_PG_STOP:-}" ]; then
    "${TWINPORT_PG_STOP[@]}" >/dev/null 2>&1 || true
  fi
}
