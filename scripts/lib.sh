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

# What the tests need beyond the build: Debian's headless Chromium and its
# WebDriver (the status-page test), curl, and Debian's Prometheus with
# promtool (the dashboards' rule checks and the real-Prometheus test),
# Ansible with ansible-lint, keepalived (its config check) and
# systemd-analyze (the unit checks) for the Ansible tests.
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
