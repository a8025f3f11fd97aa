"""Opens N idle connections to a node's API, each from its own loopback
address (127.0.1.2, 127.0.1.3, ...), then turns them into slowloris clients
(a request head that never ends), and reports how many the node refused at
once (503 too-many-connections), how many it closed within 12 s, and its
resident memory before, during and after.

Usage: python3 connection_flood.py API_PORT N NODE_PID
(the node of a testnet: `quorate testnet up --detach --dir D`, its port in
D/org-a/config.toml, its pid in D/org-a/node.lock). Loopback only.
"""
import socket
import sys
import time
port = int(sys.argv[1]); n = int(sys.argv[2]); pid = int(sys.argv[3])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return l.split()[1]
print("rss before kB", rss())
socks=[]; refused=0; errors=0
for i in range(n):
    s = socket.socket()
    src = f"127.0.{1 + i // 200}.{2 + i % 200}"
    try:
        s.bind((src, 0)); s.connect(("127.0.0.1", port)); socks.append(s)
    except OSError as e:
        errors += 1
print("opened", len(socks), "errors", errors)
time.sleep(1)
for s in socks:
    s.setblocking(False)
    try:
        d = s.recv(16)
        if d.startswith(b"HTTP/1.1 503"): refused += 1
    except BlockingIOError: pass
print("refused at once", refused, "rss during kB", rss())
# slowloris: partial heads on what is open
for s in socks:
    try: s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    except OSError: pass
time.sleep(12)
closed=0
for s in socks:
    try:
        d = s.recv(16)
        if d == b"" or d.startswith(b"HTTP/1.1 503"): closed += 1
    except BlockingIOError: pass
    except OSError: closed += 1
print("closed after 12 s", closed, "of", len(socks), "rss kB", rss())
for s in socks: s.close()
time.sleep(2)
print("rss after close kB", rss())
