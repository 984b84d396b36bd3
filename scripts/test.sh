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
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing ${need[*]}; run as root to install them (apt-get)" >&2
  fi
fi

scripts/py-venv.sh # py-spiffe in target/py-venv for tests/e2e/pyspiffe.rs
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

# The examples are documentation that must keep working: run them, not just build them.
cargo run --locked -q -p svid-broker-examples --example validate_svids
cargo run --locked -q -p svid-broker-examples --example workload_api_source
cargo run --locked -q -p svid-broker-examples --example mint_verify_token
cargo run --locked -q -p svid-broker-examples --example embed_server
cargo run --locked -q -p svid-broker-examples --example exchange_client
