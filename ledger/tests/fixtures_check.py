#!/usr/bin/env python3
"""Recomputes the format-v2 fixtures of fixtures.rs without Quorate code.

Input: the lines `print_fixture_bytes` prints (NAME HEX), on stdin:
  cargo test -p quorate-ledger --test fixtures -- --ignored --nocapture \
      print_fixture_bytes | python3 ledger/tests/fixtures_check.py
Needs `pip install blake3 cbor2 cryptography`. Hashes are blake3
derive_key with the tags of docs/ledger-format.md section 2; CBOR is parsed
with cbor2 and re-encoded in order to show each item is plain definite CBOR;
signatures are checked with `cryptography`'s Ed25519.

State roots are rebuilt from the documents alone: each state row (the
consortium, the members, the grant) is written out here from the genesis
and grant entries by the rules of docs/contracts.md and the types of
docs/ledger-format.md section 3, compared with the rows Rust prints, and put
into a sparse Merkle tree built by docs/state-tree.md section 2; the roots
must be the headers' `state_root` at genesis, block 1 (the grant), block 2
(a heartbeat: no change, the same root) and block 3 (org-b removed: its row
deleted, the grant ended, the epoch moved). The three status proofs at
height 1 (the grant present, an id absent beside another leaf, one absent
in an empty subtree) are verified by docs/ledger-format.md section 6.3 and
docs/state-tree.md section 5, and tampered copies must fail.
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


# --- The state tree (docs/state-tree.md section 2) ---------------------------

def Hb(tag, data):
    return bytes.fromhex(H(tag, data))


def key_hash(namespace, key):
    return Hb("quorate 2026 state key v1", len(namespace).to_bytes(8, "big") + namespace + key)


def value_hash(value):
    return Hb("quorate 2026 state value v1", value)


def leaf_hash(key, vhash):
    return Hb("quorate 2026 state leaf v1", key + vhash)


def node_hash(left, right):
    return Hb("quorate 2026 state node v1", left + right)


EMPTY = Hb("quorate 2026 state empty v1", b"")
assert EMPTY.hex() == "4e9ab5b6d265c32a61df5281447b2878298f64ffbda888867471b4f844509340"


def bit(key, i):
    return (key[i // 8] >> (7 - i % 8)) & 1


def tree_root(rows, depth=0):
    """root(M) = T(M, 0) over a list of (key hash, value bytes)."""
    if not rows:
        return EMPTY
    if len(rows) == 1:
        key, value = rows[0]
        return leaf_hash(key, value_hash(value))
    left = [r for r in rows if bit(r[0], depth) == 0]
    right = [r for r in rows if bit(r[0], depth) == 1]
    return node_hash(tree_root(left, depth + 1), tree_root(right, depth + 1))


def shared_bits(a, b):
    for i in range(256):
        if bit(a, i) != bit(b, i):
            return i
    return 256


def proof_verify(proof, root, key, expected):
    """docs/state-tree.md section 5: None if the claim holds, else the error."""
    assert list(proof) == ["leaf", "siblings"]
    siblings, leaf = proof["siblings"], proof["leaf"]
    n = len(siblings)
    if n > 256:
        return "TooManySiblings"
    if leaf is None:
        acc, shown = EMPTY, None
    else:
        assert list(leaf) == ["key_hash", "value_hash"]
        acc = leaf_hash(leaf["key_hash"], leaf["value_hash"])
        if leaf["key_hash"] == key:
            shown = leaf["value_hash"]
        elif shared_bits(leaf["key_hash"], key) < n:
            return "LeafOffPath"
        else:
            shown = None
    for i in reversed(range(n)):
        acc = node_hash(siblings[i], acc) if bit(key, i) else node_hash(acc, siblings[i])
    if acc != root:
        return "RootMismatch"
    if expected is None:
        return None if shown is None else "Present"
    if shown is None:
        return "Absent"
    return None if value_hash(expected) == shown else "ValueMismatch"


# --- The state rows, written out from the docs -------------------------------
# docs/ledger-format.md section 3 (types, field order) and section 4 (rows);
# docs/contracts.md (Genesis, What applying does).

def consortium_row(chain_id, epoch, policy, proposals_since=0):
    return cbor2.dumps({
        "chain_id": chain_id,
        "epoch": epoch,
        "policy": {
            "proposal_ttl_ms": policy["proposal_ttl_ms"],
            "grant_duration_max_ms": policy["grant_duration_max_ms"],
        },
        "proposals_since": proposals_since,
    })


def member_row(member_id, name, did, joined_epoch):
    return cbor2.dumps({"id": member_id, "name": name, "did": did, "joined_epoch": joined_epoch})


def grant_row(terms, status, committed_height):
    rate = terms["rate_limit"]
    return cbor2.dumps({
        "terms": {
            "grantor": terms["grantor"],
            "grantee": terms["grantee"],
            "resources": list(terms["resources"]),
            "actions": list(terms["actions"]),
            "not_before": terms["not_before"],
            "not_after": terms["not_after"],
            "purpose": terms["purpose"],
            "rate_limit": None if rate is None else {
                "requests": rate["requests"], "per_seconds": rate["per_seconds"],
            },
        },
        "status": status,
        "committed_height": committed_height,
    })


def state_rows(consortium, members, grants):
    """The state tree's map: (key hash, row) per row (section 4's table)."""
    rows = [(key_hash(b"consortium", b""), consortium)]
    rows += [(key_hash(b"member", m), row) for m, row in members.items()]
    rows += [(key_hash(b"grant", g), row) for g, row in grants.items()]
    return rows


def same_row(name, ours):
    assert raw(name) == ours, f"{name}: the row written from the docs differs from Rust's"
    in_order(raw(name))


chain_id = genesis["chain_id"]
members = {
    m: member_row(m, g["name"], g["did"], 0) for m, g in zip(member_ids, genesis["members"])
}
consortium = consortium_row(chain_id, 0, genesis["policy"])
same_row("CONSORTIUM_ROW_CBOR", consortium)
for i, m in enumerate(sorted(members)):
    same_row(f"MEMBER_ROW_CBOR_{i}", members[m])
assert f"MEMBER_ROW_CBOR_{len(members)}" not in values

g_header = cbor2.loads(raw("GENESIS_HEADER_CBOR"))
genesis_root = tree_root(state_rows(consortium, members, {}))
assert g_header["state_root"] == genesis_root, "genesis state_root"

# Block 1: the grant, recorded Active at the block's height under its id.
header1 = cbor2.loads(raw("HEADER_CBOR"))
terms = entry["proposal"]["body"]["Grant"]
grant_id = bytes.fromhex(entry_id)
grants = {grant_id: grant_row(terms, "Active", header1["height"])}
same_row("GRANT_ROW_CBOR", grants[grant_id])
root1 = tree_root(state_rows(consortium, members, grants))
assert header1["state_root"] == root1, "block 1 state_root"

# Block 2, a heartbeat: no entries, so the empty tx_root and the same root.
heartbeat_raw = raw("HEARTBEAT_HEADER_CBOR")
in_order(heartbeat_raw)
heartbeat = cbor2.loads(heartbeat_raw)
assert heartbeat["height"] == 2 and heartbeat["prev_hash"].hex() == values["BLOCK"]
assert heartbeat["tx_root"] == Hb("quorate 2026 merkle empty v1", b"")
assert heartbeat["state_root"] == root1, "a block that changes nothing keeps the root"

# Block 3: org-a removes org-b, the grantee. Its row goes, the active grant
# becomes Ended at height 3, the epoch becomes 1 (the header keeps epoch 0,
# the state's before the block).
remove_header_raw = raw("REMOVE_HEADER_CBOR")
remove, _, remove_id, _, _ = check_block(
    "REMOVE_ENTRY_CBOR", "REMOVE_HEADER_CBOR", H("quorate 2026 block header v1", remove_header_raw)
)
header3 = cbor2.loads(remove_header_raw)
assert header3["height"] == 3 and header3["epoch"] == 0
assert header3["prev_hash"] == Hb("quorate 2026 block header v1", heartbeat_raw)
for endorsement in remove["endorsements"]:
    Ed25519PublicKey.from_public_bytes(key_of[endorsement["member"]]).verify(
        endorsement["signature"], b"QUORATE_ENDORSEMENT_V1" + bytes.fromhex(remove_id)
    )
removed = remove["proposal"]["body"]["RemoveMember"]["member"]
assert list(remove["proposal"]["body"]["RemoveMember"]) == ["member"]
members3 = {m: row for m, row in members.items() if m != removed}
consortium3 = consortium_row(chain_id, 1, genesis["policy"])
grants3 = {}
for g, row in grants.items():
    record = cbor2.loads(row)
    parties = (record["terms"]["grantor"], record["terms"]["grantee"])
    if removed in parties and record["status"] == "Active":
        row = grant_row(record["terms"], {"Ended": {"height": header3["height"]}},
                        record["committed_height"])
    grants3[g] = row
same_row("REMOVED_CONSORTIUM_ROW_CBOR", consortium3)
same_row("REMOVED_GRANT_ROW_CBOR", grants3[grant_id])
root3 = tree_root(state_rows(consortium3, members3, grants3))
assert header3["state_root"] == root3, "block 3 state_root"


# --- Status proofs (docs/ledger-format.md section 6.3) -----------------------

def verify_certificate(cert, block_hash, validator_keys):
    assert cert["value_id"] == block_hash
    indices = [i for i, _ in cert["signatures"]]
    assert indices == sorted(set(indices)), "certificate indices not increasing"
    assert len(indices) >= 2 * len(validator_keys) // 3 + 1, "no quorum"
    sign_bytes = (
        b"QUORATE_VOTE_V1"
        + len(chain_id.encode()).to_bytes(2, "big")
        + chain_id.encode()
        + cert["height"].to_bytes(8, "big")
        + cert["round"].to_bytes(4, "big")
        + b"\x02\x01"
        + cert["value_id"]
    )
    for index, signature in cert["signatures"]:
        Ed25519PublicKey.from_public_bytes(validator_keys[index]).verify(signature, sign_bytes)


def standing(record, time):
    if record is None:
        return "absent"
    status = record["status"]
    if isinstance(status, dict):
        return {"Revoked": "revoked", "Ended": "ended"}[next(iter(status))]
    assert status == "Active"
    if time >= record["terms"]["not_after"]:
        return "expired"
    if time < record["terms"]["not_before"]:
        return "not-yet-valid"
    return "active"


def verify_status(proof):
    """Section 6.3 for a proof with no membership changes; the standing."""
    assert list(proof) == ["genesis", "membership_changes", "header", "certificate",
                           "grant_id", "record", "path"]
    # 6.1: the proof's genesis is the fixture's (verified above, its
    # certificate here), and no membership change came before height 1.
    g = proof["genesis"]
    assert cbor2.dumps(g["block"]["header"]) == raw("GENESIS_HEADER_CBOR")
    assert [cbor2.dumps(e) for e in g["block"]["entries"]] == [raw("GENESIS_ENTRY_CBOR")]
    verify_certificate(g["certificate"], bytes.fromhex(values["GENESIS"]), validators)
    assert proof["membership_changes"] == []
    header = proof["header"]
    assert header["chain_id"] == chain_id and header["epoch"] == 0
    cert = proof["certificate"]
    assert cert["height"] == header["height"] > 0
    verify_certificate(cert, Hb("quorate 2026 block header v1", cbor2.dumps(header)), validators)
    key = key_hash(b"grant", proof["grant_id"])
    record = proof["record"]
    error = proof_verify(proof["path"], header["state_root"], key, record)
    if error:
        return error
    if record is not None:
        in_order(record)
        record = cbor2.loads(record)
    return standing(record, header["time"])


present = cbor2.loads(raw("STATUS_PROOF_CBOR"))
assert cbor2.dumps(present) == raw("STATUS_PROOF_CBOR")
assert present["grant_id"] == grant_id and present["record"] == grants[grant_id]
assert present["header"] == header1
assert verify_status(present) == "active"
beside = cbor2.loads(raw("STATUS_ABSENT_BESIDE_CBOR"))
assert beside["record"] is None and beside["path"]["leaf"] is not None
assert beside["path"]["leaf"]["key_hash"] != key_hash(b"grant", beside["grant_id"])
assert verify_status(beside) == "absent"
empty = cbor2.loads(raw("STATUS_ABSENT_EMPTY_CBOR"))
assert empty["record"] is None and empty["path"]["leaf"] is None
assert verify_status(empty) == "absent"


def tampered(proof, change):
    copy = cbor2.loads(cbor2.dumps(proof))
    change(copy)
    return verify_status(copy)


def set_(field, value):
    return lambda p: p.__setitem__(field, value)


def flip_sibling(p):
    p["path"]["siblings"][-1] = bytes(32)


def flip_key_bit(p):
    # Another leaf, claimed where the id's path ends, but off that path.
    leaf = p["path"]["leaf"]
    k = bytearray(leaf["key_hash"])
    k[0] ^= 0x80
    leaf["key_hash"] = bytes(k)


ended_row = grant_row(terms, {"Ended": {"height": 1}}, 1)
assert tampered(present, set_("record", None)) == "Present"
assert tampered(present, set_("record", ended_row)) == "ValueMismatch"
assert tampered(present, flip_sibling) == "RootMismatch"
assert tampered(beside, set_("record", grants[grant_id])) == "Absent"
assert tampered(beside, flip_key_bit) == "LeafOffPath"
assert tampered(empty, flip_sibling) == "RootMismatch"
assert tampered(present, set_("grant_id", beside["grant_id"])) == "LeafOffPath"

print("state roots: genesis", genesis_root.hex(), "block 1", root1.hex(), "block 3", root3.hex())
print("fixtures recomputed independently: OK")
