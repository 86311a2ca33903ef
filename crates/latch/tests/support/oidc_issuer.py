#!/usr/bin/env python3
"""A small OpenID Connect token issuer for latch's token-exchange tests.

It stands in for a CI system's OIDC provider (GitHub Actions, GitLab CI):
it serves a discovery document and a JWKS on 127.0.0.1 and mints ID tokens
with PyJWT + cryptography, signed RS256, ES256 or EdDSA, with whatever claims
the test asks for. Keys can be rotated (the JWKS then lists only the new one),
and fetches are counted, so tests can see latch's cache at work.

    python3 oidc_issuer.py            # prints ISSUER=http://127.0.0.1:PORT, serves until killed

    GET  /.well-known/openid-configuration
    GET  /jwks                          the current public keys
    POST /mint    {"claims": {...}, "alg": "RS256", "key": "rsa-1"?, "kid": "x"?, "no_kid": false}
                  -> {"token": "...", "kid": "..."}: signed with the current key of alg, or with
                  key (any ever made, retired ones too); the header's kid is kid, else the key's
    POST /rotate  {"alg": "RS256"} -> {"kid": new, "retired": old}
    GET  /stats   -> {"discovery": n, "jwks": n}
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PREFIX = {"RS256": "rsa", "ES256": "ec", "EdDSA": "ed"}
lock = threading.Lock()
keys = {}        # kid -> (alg, private key), every key ever made
current = {}     # alg -> kid in the JWKS
counters = {"discovery": 0, "jwks": 0}
serial = {"RS256": 0, "ES256": 0, "EdDSA": 0}


def new_key(alg):
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown alg {alg}")
    serial[alg] += 1
    kid = f"{PREFIX[alg]}-{serial[alg]}"
    keys[kid] = (alg, private)
    old = current.get(alg)
    current[alg] = kid
    return kid, old


def public_jwk(kid):
    alg, private = keys[kid]
    public = private.public_key()
    if alg == "RS256":
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif alg == "ES256":
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


for a in ("RS256", "ES256", "EdDSA"):
    new_key(a)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        issuer = self.server.issuer
        with lock:
            if self.path == "/.well-known/openid-configuration":
                counters["discovery"] += 1
                self.reply(200, {
                    "issuer": issuer,
                    "jwks_uri": issuer + "/jwks",
                    # Named so that people's sign-in can be started against this
                    # issuer (tests/authz_matrix.rs); not served.
                    "authorization_endpoint": issuer + "/authorize",
                    "token_endpoint": issuer + "/token",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": list(PREFIX),
                })
            elif self.path == "/jwks":
                counters["jwks"] += 1
                self.reply(200, {"keys": [public_jwk(k) for k in current.values()]})
            elif self.path == "/stats":
                self.reply(200, dict(counters))
            else:
                self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(length) or b"{}")
        with lock:
            if self.path == "/mint":
                # Signed with the current key of "alg", or with key "key" (any ever
                # made, retired ones too); the header names "kid" if given (any
                # text, to make mismatches), else the signing key's, or none.
                signer = req.get("key") or current[req.get("alg", "RS256")]
                key_alg, private = keys[signer]
                kid = req.get("kid", signer)
                headers = {} if req.get("no_kid") else {"kid": kid}
                token = jwt.encode(req["claims"], private, algorithm=key_alg, headers=headers)
                self.reply(200, {"token": token, "kid": None if req.get("no_kid") else kid})
            elif self.path == "/rotate":
                kid, old = new_key(req.get("alg", "RS256"))
                self.reply(200, {"kid": kid, "retired": old})
            else:
                self.reply(404, {"error": "not found"})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"ISSUER={server.issuer}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
