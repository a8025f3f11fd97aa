#!/usr/bin/env python3
"""Recomputes the format-v2 fixtures of fixtures.rs without Quorate code.

Input: the lines `print_fixture_bytes` prints (NAME HEX), on stdin:
  cargo test -p quorate-ledger --test fixtures -- --ignored --nocapture \
      print_fixture_bytes | python3 ledger/tests/fixtures_check.py
Needs `pip install blake3 cbor2 cryptography`. Hashes are blake3
derive_key with the tags of docs/ledger-format.md section 2; CBOR is parsed
with cbor2 and re-encoded in order to show each item is plain definite CBOR;
signatures are checked with `cryptography`'s Ed25519.
"""
import sys

import blake3
import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

values = {}
for line in sys.stdin:
    name, _, value = line.strip().partition(" ")
    if name.isupper() and value:
        values[name] = value


def H(tag, data):
    return blake3.blake3(data, derive_key_context=tag).hexdigest()


def raw(name):
    return bytes.fromhex(values[name])


def in_order(item):
    # cbor2 keeps map order, so a canonical item re-encodes to itself.
    assert cbor2.dumps(cbor2.loads(item)) == item, "not plain CBOR in field order"


def did_key_bytes(did):
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = 0
    for c in did[len("did:key:z"):]:
        n = n * 58 + alphabet.index(c)
    key = n.to_bytes(34, "big")
    assert key[:2] == b"\xed\x01", "not an Ed25519 did:key"
    return key[2:]


def check_block(entry_name, header_name, block_hash):
    """A one-entry block: entry id, leaf, tx_root and block hash."""
    entry_raw, header_raw = raw(entry_name), raw(header_name)
    in_order(entry_raw)
    in_order(header_raw)
    entry = cbor2.loads(entry_raw)
    assert list(entry) == ["proposal", "endorsements"]
    # The proposal's bytes are inside the entry's, right after its key.
    head = bytes([0xA2, 0x68]) + b"proposal"
    proposal_raw = cbor2.dumps(entry["proposal"])
    assert entry_raw[: len(head) + len(proposal_raw)] == head + proposal_raw
    members = [e["member"] for e in entry["endorsements"]]
    assert members == sorted(set(members)), "endorsements not strictly sorted"
    entry_id = H("quorate 2026 ledger entry v1", proposal_raw)
    leaf = H("quorate 2026 block entry v2", entry_raw)
    tx_root = H("quorate 2026 merkle leaf v1", bytes.fromhex(leaf))
    header = cbor2.loads(header_raw)
    assert header["tx_root"].hex() == tx_root, "tx_root"
    assert H("quorate 2026 block header v1", header_raw) == block_hash, "block hash"
    return entry, proposal_raw, entry_id, leaf, tx_root


assert H("quorate 2026 block entry v2", b"quorate") == values["TAG"]

g_entry, _, g_id, _, g_tx = check_block(
    "GENESIS_ENTRY_CBOR", "GENESIS_HEADER_CBOR", values["GENESIS"]
)
assert g_tx == values["GENESIS_TX"]
genesis = g_entry["proposal"]["body"]["Genesis"]
member_ids = [
    bytes.fromhex(
        H("quorate 2026 genesis member v1", bytes.fromhex(g_id) + i.to_bytes(4, "big"))
    )
    for i in range(len(genesis["members"]))
]
key_of = {m: did_key_bytes(g["did"]) for m, g in zip(member_ids, genesis["members"])}

entry, proposal_raw, entry_id, leaf, tx_root = check_block(
    "ENTRY_CBOR", "HEADER_CBOR", values["BLOCK"]
)
assert proposal_raw == raw("PROPOSAL_CBOR")
assert (entry_id, leaf, tx_root) == (values["ID"], values["LEAF"], values["TX"])

# Every endorsement: Ed25519 of "QUORATE_ENDORSEMENT_V1" || entry id.
for e_, id_ in [(g_entry, g_id), (entry, entry_id)]:
    for endorsement in e_["endorsements"]:
        Ed25519PublicKey.from_public_bytes(key_of[endorsement["member"]]).verify(
            endorsement["signature"], b"QUORATE_ENDORSEMENT_V1" + bytes.fromhex(id_)
        )

# The certificate: value_id is major type 2, length 32, the block hash; each
# precommit verifies under the validator it names (members by id).
cert_raw = raw("CERT_CBOR")
in_order(cert_raw)
cert = cbor2.loads(cert_raw)
at = cert_raw.index(bytes([0x68]) + b"value_id") + 9
assert cert_raw[at : at + 2] == b"\x58\x20" and isinstance(cert["value_id"], bytes)
assert cert["value_id"].hex() == values["BLOCK"]
validators = [key_of[m] for m in sorted(member_ids)]
chain = b"test-consortium"
message = (
    b"QUORATE_VOTE_V1"
    + len(chain).to_bytes(2, "big")
    + chain
    + cert["height"].to_bytes(8, "big")
    + cert["round"].to_bytes(4, "big")
    + b"\x02\x01"
    + cert["value_id"]
)
for index, signature in cert["signatures"]:
    Ed25519PublicKey.from_public_bytes(validators[index]).verify(signature, message)

print("fixtures recomputed independently: OK")
