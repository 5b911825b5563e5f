#!/usr/bin/env python3
"""Resident memory per idle keep-alive connection and per in-flight request of one edge server.

Used by benches/connection-memory.sh. `measure PID PORT N PATH M HOLD_COUNT_FILE TLS_PORT K`: first N
connections, each served one request for PATH (a cache hit) and then left open (the server's RSS growth
per connection), then, with those still open, M requests for distinct uncached paths whose origin never
answers (the growth per request once the origin has seen them all), then K idle TLS connections on
TLS_PORT (as the first N); prints the three. Every socket stays open
until both figures are taken: nothing the server frees between the two is reused by the second, which
would understate it (measured apart, one after the other, the second figure came out half or below zero).
"""
import os
import socket
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


def settle(pid):
    """RSS once it stops moving (the server finished what the last sockets asked of it)."""
    samples = [rss_kb(pid)]
    for _ in range(100):
        time.sleep(0.2)
        samples.append(rss_kb(pid))
        if len(samples) >= 5 and len(set(samples[-5:])) == 1:
            break
    return samples[-1]


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("closed before a response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("closed mid-body")
        body += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(head.split(b"\r\n")[0].decode())


def idle(pid, port, n, path, sockets):
    before = settle(pid)
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: edge.test\r\n\r\n".encode())
        read_response(s)
        sockets.append(s)
    after = settle(pid)
    return (after - before) / n


def tls_idle(pid, port, n, path, sockets):
    """As `idle`, over TLS (no certificate check: the bench's own self-signed one)."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    before = settle(pid)
    for _ in range(n):
        s = context.wrap_socket(socket.create_connection(("127.0.0.1", port)))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: edge.test\r\n\r\n".encode())
        read_response(s)
        sockets.append(s)
    after = settle(pid)
    return (after - before) / n


def inflight(pid, port, n, count_file, sockets):
    before = settle(pid)
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET /hold/{i} HTTP/1.1\r\nHost: edge.test\r\n\r\n".encode())
        sockets.append(s)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            seen = int(open(count_file).read() or 0)
        except (FileNotFoundError, ValueError):
            seen = 0
        if seen >= n:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"the origin saw {seen} of {n} requests")
    after = settle(pid)
    return (after - before) / n


def hold_origin(port, count_file):
    """An origin that reads requests and never answers, counting them into count_file."""
    import selectors

    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    seen = 0
    conns = []
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conns.append(conn)
                sel.register(conn, selectors.EVENT_READ)
            else:
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                seen += data.count(b"\r\n\r\n")
                with open(count_file + ".tmp", "w") as f:
                    f.write(str(seen))
                os.replace(count_file + ".tmp", count_file)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "measure":
        pid, port = int(sys.argv[2]), int(sys.argv[3])
        held = []
        per_idle = idle(pid, port, int(sys.argv[4]), sys.argv[5], held)
        per_request = inflight(pid, port, int(sys.argv[6]), sys.argv[7], held)
        per_tls = tls_idle(pid, int(sys.argv[8]), int(sys.argv[9]), sys.argv[5], held)
        print(f"{per_idle:.1f} {per_request:.1f} {per_tls:.1f}")
    elif mode == "hold-origin":
        hold_origin(int(sys.argv[2]), sys.argv[3])
    else:
        raise SystemExit(__doc__)
