"""py-spiffe (grpc-core) against `svid-broker dev`: every Workload API call, one result per line.

Usage: workload_api.py SOCKET_PATH AUDIENCE

Prints `key=value` lines that tests/e2e/pyspiffe.rs asserts; any failure is a Python exception
and a non-zero exit. No option is passed to grpc: the channel sends the default `:authority`
(the percent-encoded socket path), exactly as an unmodified application would.
"""

import sys

from spiffe import TrustDomain, WorkloadApiClient
from spiffe.svid.jwt_svid import JwtSvid
from spiffe.workloadapi.errors import ValidateJwtSvidError


def main() -> None:
    socket_path, audience = sys.argv[1], sys.argv[2]
    client = WorkloadApiClient(socket_path="unix://" + socket_path, default_timeout=20)

    svid = client.fetch_x509_svid()
    print(f"x509_svid={svid.spiffe_id}")
    print(f"x509_svid_chain={len(svid.cert_chain)}")

    x509_bundles = client.fetch_x509_bundles()
    for bundle in sorted(x509_bundles.bundles, key=lambda b: str(b.trust_domain)):
        print(f"x509_bundle={bundle.trust_domain} authorities={len(bundle.x509_authorities)}")

    jwt = client.fetch_jwt_svid(audience={audience})
    print(f"jwt_svid={jwt.spiffe_id} aud={','.join(sorted(jwt.audience))}")

    jwt_bundles = client.fetch_jwt_bundles()
    for bundle in sorted(jwt_bundles.bundles, key=lambda b: str(b.trust_domain)):
        print(f"jwt_bundle={bundle.trust_domain} authorities={len(bundle.jwt_authorities)}")

    # The server's ValidateJWTSVID, then py-spiffe's own check against the fetched JWT bundle.
    validated = client.validate_jwt_svid(jwt.token, audience)
    print(f"validated={validated.spiffe_id}")
    bundle = jwt_bundles.get_bundle_for_trust_domain(TrustDomain(str(jwt.spiffe_id.trust_domain)))
    local = JwtSvid.parse_and_validate(jwt.token, bundle, {audience})
    print(f"verified_locally={local.spiffe_id}")

    try:
        client.validate_jwt_svid(jwt.token, audience + "-other")
        print("wrong_audience=accepted")
    except ValidateJwtSvidError:
        print("wrong_audience=refused")


if __name__ == "__main__":
    main()
