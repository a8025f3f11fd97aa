"""A stand-in identity provider for the OIDC end-to-end test, written with
PyJWT and cryptography (a JOSE implementation other than the node's).

    python3 idp.py keys DIR          writes DIR/jwks.json and the private keys
    python3 idp.py mint DIR SPEC     prints one JWT per entry of SPEC (JSON:
                                     [{"alg", "kid", "claims"}]); alg "none"
                                     is unsigned, "HS256" uses a shared secret
"""

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


if __name__ == "__main__":
    if sys.argv[1] == "keys":
        keys(sys.argv[2])
    else:
        mint(sys.argv[2], sys.argv[3])
