"""A member's request signed by an ordinary third-party RFC 9421 library.

Usage: rfc9421_client.py KEY_PEM DID URL AUDIENCE CA_PEM
Signs `GET URL` with `http-message-signatures` (Ed25519, keyid = the DID,
covering @method, @authority, @target-uri and the Quorate-Audience header
naming the member addressed (its did:key), with created and nonce),
sends it with urllib over HTTPS (the gateway's certificate verified
against CA_PEM), and prints the status, then the body.
"""
import secrets
import ssl
import sys
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms


class Message:
    """The message interface the library signs: method, url, headers."""

    def __init__(self, method, url):
        self.method = method
        self.url = url
        self.headers = {}


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, pem):
        self.key = load_pem_private_key(pem, password=None)

    def resolve_private_key(self, key_id):
        return self.key

    def resolve_public_key(self, key_id):
        return self.key.public_key()


def main():
    key_path, did, url, audience, ca = sys.argv[1:6]
    tls = ssl.create_default_context(cafile=ca)
    with open(key_path, "rb") as f:
        signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Keys(f.read()))
    message = Message("GET", url)
    message.headers["Quorate-Audience"] = audience
    signer.sign(
        message,
        key_id=did,
        nonce=secrets.token_hex(16),
        covered_component_ids=("@method", "@authority", "@target-uri", "quorate-audience"),
    )
    request = urllib.request.Request(url, method="GET", headers=message.headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=tls) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    sys.stdout.write(f"{status}\n")
    sys.stdout.buffer.write(body)


if __name__ == "__main__":
    main()
