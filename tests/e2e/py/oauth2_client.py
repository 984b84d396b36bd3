"""authlib's OAuth2Session against the broker's RFC 8693 endpoint (`POST /oauth2/token`).

Usage:
    oauth2_client.py TOKEN_URL SERVICE SCOPE --jwt-svid-file PATH
    oauth2_client.py TOKEN_URL SERVICE SCOPE --workload-socket PATH --audience AUDIENCE

TOKEN_URL is `{public_url}/oauth2/token`. The JWT-SVID (audience: the broker's) comes from a file,
or from the Workload API through py-spiffe (`svid-broker dev`'s socket); it is never printed.

Prints `key=value` lines for the test to assert, in this order:
    issued_token_type=urn:ietf:params:oauth:token-type:access_token
    token_type=Bearer
    scope=<granted scopes, space-separated>
    expires_in_positive=true
    expires_at_set=true
    aud=<the access token's aud>
    sub=<the access token's sub>
    tampered=<error code>            (the JWT-SVID with its signature broken: invalid_request)
    unknown_service=<error code>     (SERVICE + ".unknown": invalid_target)
    other_grant=<error code>         (grant_type=client_credentials: unsupported_grant_type)
    echoed=false                     (no answer above contained the JWT-SVID)
Any other failure is a Python exception and a non-zero exit.
"""

import argparse
import base64
import json
import os
import sys

from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TIMEOUT = 20


def jwt_svid(args: argparse.Namespace) -> str:
    if args.jwt_svid_file:
        with open(args.jwt_svid_file, encoding="ascii") as f:
            return f.read().strip()
    # Only this mode needs py-spiffe (the venv has it for tests/e2e/pyspiffe.rs).
    from spiffe import WorkloadApiClient

    client = WorkloadApiClient(
        socket_path="unix://" + args.workload_socket, default_timeout=TIMEOUT
    )
    return client.fetch_jwt_svid(audience={args.audience}).token


def session() -> OAuth2Session:
    # No client authentication: the subject token is the only proof (token_endpoint_auth_method
    # "none" adds nothing but, at most, a client_id the broker ignores).
    return OAuth2Session(token_endpoint_auth_method="none")


def exchange(url: str, token: str, service: str, scope: str, **extra) -> dict:
    params = dict(
        grant_type=GRANT_TYPE,
        subject_token=token,
        subject_token_type=JWT,
        audience=service,
        scope=scope,
        requested_token_type=ACCESS_TOKEN,
    )
    params.update(extra)
    with session() as s:
        return s.fetch_token(url, timeout=TIMEOUT, **params)


def error_of(call, seen: list) -> str:
    try:
        call()
    except OAuthError as e:
        seen.append(f"{e.error} {e.description}")
        return e.error
    raise AssertionError("the request was expected to be refused")


def claims(access_token: str) -> dict:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("token_url")
    parser.add_argument("service")
    parser.add_argument("scope")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--jwt-svid-file")
    source.add_argument("--workload-socket")
    parser.add_argument("--audience", default="svid-broker")
    args = parser.parse_args()
    if args.token_url.startswith("http://127.0.0.1") or args.token_url.startswith("http://[::1]"):
        # authlib refuses plain HTTP unless told; the e2e broker listens on loopback only.
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

    svid = jwt_svid(args)
    token = exchange(args.token_url, svid, args.service, args.scope)
    print(f"issued_token_type={token['issued_token_type']}")
    print(f"token_type={token['token_type']}")
    print(f"scope={token['scope']}")
    print(f"expires_in_positive={str(int(token['expires_in']) > 0).lower()}")
    # OAuth2Token computes expires_at from expires_in, as a caching client would read it.
    print(f"expires_at_set={str(token.get('expires_at') is not None).lower()}")
    c = claims(token["access_token"])
    aud = c["aud"] if isinstance(c["aud"], str) else ",".join(c["aud"])
    print(f"aud={aud}")
    print(f"sub={c['sub']}")

    answers = [json.dumps(dict(token))]
    # A broken signature: a character inside the JWS signature changed (not the last one,
    # whose low bits may be base64 padding a lenient decoder ignores).
    at = len(svid) - 10
    tampered = svid[:at] + ("A" if svid[at] != "A" else "B") + svid[at + 1:]
    print("tampered=" + error_of(
        lambda: exchange(args.token_url, tampered, args.service, args.scope), answers))
    print("unknown_service=" + error_of(
        lambda: exchange(args.token_url, svid, args.service + ".unknown", args.scope), answers))

    def other_grant() -> None:
        with session() as s:
            s.fetch_token(args.token_url, grant_type="client_credentials", timeout=TIMEOUT)

    print("other_grant=" + error_of(other_grant, answers))
    echoed = any(svid in a or tampered in a for a in answers)
    print(f"echoed={str(echoed).lower()}")


if __name__ == "__main__":
    sys.exit(main())
