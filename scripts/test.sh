#!/usr/bin/env bash
# The whole test suite, as a newcomer runs it and as .ci/run runs it.
# It installs what the tests need when it can (as root, from Debian's packages) and every test
# starts and stops its own servers on 127.0.0.1 or Unix sockets in temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."

# Nothing outside Rust is needed yet; the registry tests of the token service will add
# docker-registry and skopeo here.

cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

# The examples are documentation that must keep working: run them, not just build them.
cargo run --locked -q -p svid-broker-examples --example validate_svids
cargo run --locked -q -p svid-broker-examples --example workload_api_source
