#!/usr/bin/env bash
# The whole test suite, as a newcomer runs it and as .ci/run runs it.
# It installs what the tests need when it can (as root, from Debian's packages) and every test
# starts and stops its own servers on 127.0.0.1 or Unix sockets in temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real registry (Debian's docker-registry, distribution 2.8.2) and the real clients (skopeo
# 1.9.3, containerd 1.6's ctr) for the end-to-end tests, and openssl for the documented CA recipe. Installed only when missing, and only as root; without them
# those tests fail under CI=true and are skipped with a notice otherwise.
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v openssl >/dev/null || need+=(openssl)
# containerd 1.6 and ctr: a real kubelet-side client (tests/e2e/containerd.rs runs a private daemon).
command -v containerd >/dev/null || need+=(containerd)
# Headless Chromium renders the audit report's HTML page (tests/e2e/audit_html.rs); SoftHSM2 is
# the real PKCS#11 token that holds the signing keys in tests/e2e/hsm.rs.
command -v chromium >/dev/null || need+=(chromium)
command -v softhsm2-util >/dev/null || need+=(softhsm2)
# OpenSC's pkcs11-tool: an independent reader of what the token holds (tests/e2e/hsm.rs).
command -v pkcs11-tool >/dev/null || need+=(opensc)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing ${need[*]}; run as root to install them (apt-get)" >&2
  fi
fi

# cargo-deny for deny.toml, from crates.io, pinned, built only when this version is missing
# (about 3.5 minutes on two cores; its release profile's fat LTO is turned off, which changes
# nothing it checks).
# Like the other components: without it the checks fail under CI=true and are skipped with a
# notice otherwise.
deny_version=0.20.2
have_deny=true
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $deny_version" ]; then
  if ! CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked --quiet cargo-deny --version "$deny_version"; then
    if [ "${CI:-}" = true ]; then
      echo "scripts/test.sh: cannot install cargo-deny $deny_version" >&2
      exit 1
    fi
    echo "scripts/test.sh: NOTICE: no cargo-deny $deny_version; dependency checks skipped" >&2
    have_deny=false
  fi
fi

scripts/py-venv.sh # py-spiffe in target/py-venv for tests/e2e/pyspiffe.rs

# Dependency rules first (seconds), so a banned crate or a new duplicate fails before the tests.
deny_checks() {
  # Licenses, bans and sources need only Cargo.lock and crates.io: always checked.
  cargo deny --locked check licenses bans sources
  # Advisories need the RustSec database, a git repository that cargo-deny clones itself and
  # that is not a package registry, so machines that reach only the registries cannot have it.
  # Checked when the fetch works; otherwise said loudly, never passed over in silence.
  local fetch_log
  if fetch_log=$(timeout 120 cargo deny --locked fetch db 2>&1); then
    cargo deny --locked check advisories
  else
    printf '%s\n' "$fetch_log" | grep -m1 -E 'fatal|error' >&2 || true
    cat >&2 <<'NOTICE'
################################################################################
## NOTICE: advisories NOT checked. The RustSec advisory database could not be ##
## fetched from here. Licenses, bans and sources were checked. Run            ##
## `cargo deny check advisories` where the database is reachable (see         ##
## CONTRIBUTING.md, "Dependency checks").                                     ##
################################################################################
NOTICE
  fi
}
if $have_deny; then deny_checks; fi

cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

# The workspace build unifies features, so the cloud kinds (`ecr`, `gar`, `acr`, default in
# `svid-broker`) are always in it. A broker built without them must still refuse their entries
# by name: the server's test of that, and the slim binary, built without the features.
cargo test --locked -q -p svid-broker-server --lib cloud_entry
cargo build --locked -q -p svid-broker --no-default-features

# The examples are documentation that must keep working: run them, not just build them.
cargo run --locked -q -p svid-broker-examples --example validate_svids
cargo run --locked -q -p svid-broker-examples --example workload_api_source
cargo run --locked -q -p svid-broker-examples --example mint_verify_token
cargo run --locked -q -p svid-broker-examples --example embed_server
cargo run --locked -q -p svid-broker-examples --example exchange_client
# Each library crate's own example (the one its README shows).
cargo run --locked -q -p svid-broker-identity --example verify_x509_svid
cargo run --locked -q -p svid-broker-proto --example wire_messages
cargo run --locked -q -p svid-broker-policy --example decide
cargo run --locked -q -p svid-broker-token --example mint
cargo run --locked -q -p svid-broker-sources --example bundle_file
cargo run --locked -q -p svid-broker-client --example error_classes
cargo run --locked -q -p svid-broker-dev --example workload_api
