"""An audit-log verifier written from docs/audit-log.md alone, with the
`blake3` package: no Quorate code.

Usage: verify_audit.py PATH   (a data directory, or its audit.log)
Checks every record of the archived segments (PATH/audit/*.log, in name
order) and then of the current file: each record's hash, its link to the
one before, and its seq. Prints the record count, the first seq and the
head hash; exits 1 at the first broken record, naming its file and line.
"""
import json
import os
import re
import sys

import blake3

CONTEXT = "quorate 2026 audit record v1"
ZERO = "0" * 64
SEGMENT = re.compile(r"^\d{20}-\d{20}\.log$")


def files(path):
    if os.path.isdir(path):
        path = os.path.join(path, "audit.log")
    directory = os.path.join(os.path.dirname(path), "audit")
    segments = []
    if os.path.isdir(directory):
        segments = sorted(os.path.join(directory, n) for n in os.listdir(directory) if SEGMENT.match(n))
    return segments + ([path] if os.path.exists(path) or not segments else [])


def main():
    expected = None  # (seq, prev) the next record must have
    count, first = 0, None
    for name in files(sys.argv[1]):
        with open(name, "rb") as f:
            for number, line in enumerate(f, 1):
                def broken(why):
                    sys.exit(f"{name}: line {number}: {why}")

                if not line.endswith(b"\n"):
                    broken("unterminated line")
                line = line[:-1]
                record = json.loads(line)
                marker = b',"hash":"'
                cut = line.rfind(marker)
                if cut < 0 or line[cut + len(marker):] != record["hash"].encode() + b'"}':
                    broken("the hash is not the record's last member")
                body = line[:cut] + b"}"
                if blake3.blake3(body, derive_key_context=CONTEXT).hexdigest() != record["hash"]:
                    broken("hash does not match the record")
                if expected is None:
                    # The chain's start: seq 1 after zeros, or (segments
                    # archived away) wherever the first file begins.
                    if record["seq"] == 1 and record["prev"] != ZERO:
                        broken("the first record does not follow zeros")
                elif (record["seq"], record["prev"]) != expected:
                    broken(f"seq {record['seq']} or prev out of chain (expected seq {expected[0]})")
                first = record["seq"] if first is None else first
                expected = (record["seq"] + 1, record["hash"])
                count += 1
    print(f"records: {count}")
    print(f"first:   {first if first is not None else 1}")
    print(f"head:    {expected[1] if expected else ZERO}")


if __name__ == "__main__":
    main()
