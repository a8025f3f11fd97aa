"""A stand-in identity provider for the OIDC end-to-end test, written with
PyJWT and cryptography (a JOSE implementation other than the node's).

    python3 idp.py keys DIR          writes DIR/jwks.json and the private keys
    python3 idp.py mint DIR SPEC     prints one JWT per entry of SPEC (JSON:
                                     [{"alg", "kid", "claims"}]); alg "none"
                                     is unsigned, "HS256" uses a shared secret
    python3 idp.py serve DIR PORT ISSUER CLIENT_ID GROUP [CERT KEY]
                                     serves DIR/jwks.json (over TLS with
                                     CERT and KEY when given), and OpenID Connect's
                                     authorization code flow with PKCE for
                                     CLIENT_ID: /authorize signs "alice" (in
                                     GROUP) in at once, /token trades the code
                                     (checking the verifier) for an ES256 ID
                                     token
"""

import base64
import hashlib
import secrets
import ssl
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

KEYS = {
    "ed": (lambda: ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm, "EdDSA"),
    "ec": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm, "ES256"),
    "rsa": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm, "RS256"),
}


def keys(directory):
    jwks = []
    for kid, (generate, algorithm, alg) in KEYS.items():
        private = generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with open(os.path.join(directory, kid + ".pem"), "wb") as out:
            out.write(pem)
        jwk = json.loads(algorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": alg})
        jwks.append(jwk)
    with open(os.path.join(directory, "jwks.json"), "w") as out:
        json.dump({"keys": jwks}, out)


def mint(directory, spec):
    for item in json.loads(spec):
        alg, kid, claims = item["alg"], item.get("kid"), item["claims"]
        headers = {"kid": kid} if kid else {}
        if alg == "none":
            token = jwt.encode(claims, None, algorithm="none", headers=headers)
        elif alg == "HS256":
            token = jwt.encode(claims, "a shared secret", algorithm="HS256", headers=headers)
        else:
            with open(os.path.join(directory, item.get("key", kid) + ".pem"), "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
            token = jwt.encode(claims, key, algorithm=alg, headers=headers)
        print(token)


def serve(directory, port, issuer, client_id, group, cert=None, key=None):
    codes = {}
    with open(os.path.join(directory, "ec.pem"), "rb") as f:
        signing_key = serialization.load_pem_private_key(f.read(), password=None)

    class Provider(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body=b"", headers=()):
            self.send_response(status)
            self.send_header("Access-Control-Allow-Origin", "*")
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            if url.path == "/jwks.json":
                with open(os.path.join(directory, "jwks.json"), "rb") as f:
                    return self.answer(200, f.read(), [("Content-Type", "application/json")])
            if url.path == "/authorize":
                q = dict(urllib.parse.parse_qsl(url.query))
                if q.get("client_id") != client_id or q.get("code_challenge_method") != "S256":
                    return self.answer(400, b"bad authorization request")
                code = secrets.token_urlsafe(16)
                codes[code] = q
                target = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
                return self.answer(302, headers=[("Location", target)])
            self.answer(404)

        def do_POST(self):
            if self.path != "/token":
                return self.answer(404)
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            asked = codes.pop(form.get("code", ""), None)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (asked is None or asked["code_challenge"] != challenge
                    or form.get("redirect_uri") != asked["redirect_uri"]
                    or form.get("client_id") != client_id):
                return self.answer(400, b'{"error":"invalid_grant"}', [("Content-Type", "application/json")])
            now = int(time.time())
            claims = {"iss": issuer, "aud": client_id, "sub": "alice", "groups": [group],
                      "nonce": asked["nonce"], "iat": now, "exp": now + 600}
            token = jwt.encode(claims, signing_key, algorithm="ES256", headers={"kid": "ec"})
            body = json.dumps({"id_token": token, "token_type": "Bearer", "expires_in": 600}).encode()
            self.answer(200, body, [("Content-Type", "application/json")])

    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Provider)
    if cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "keys":
        keys(sys.argv[2])
    elif sys.argv[1] == "serve":
        serve(*sys.argv[2:9])
    else:
        mint(sys.argv[2], sys.argv[3])
