#!/usr/bin/env python3
"""A paced UDP stream and its receiver, for measuring failover outages.

send DST PORT INTERVAL_MS SECONDS   sends sequence-numbered datagrams every INTERVAL_MS
recv PORT SECONDS OUT               writes "seq arrival_ns" per datagram to OUT

The outage is the longest gap between two consecutive arrivals at the receiver: the time from
the last packet the old master forwarded to the first the new master forwarded.
"""
import socket
import struct
import sys
import time


def send(dst, port, interval_ms, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = interval_ms / 1000.0
    start = time.monotonic()
    seq = 0
    while time.monotonic() - start < seconds:
        s.sendto(struct.pack("!Q", seq) + b"x" * 56, (dst, port))
        seq += 1
        # Pace against the start, not the previous send: sleeps that overrun do not add up.
        delay = start + seq * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def recv(port, seconds, out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.5)
    end = time.monotonic() + seconds
    with open(out, "w") as f:
        while time.monotonic() < end:
            try:
                data, _ = s.recvfrom(2048)
            except socket.timeout:
                continue
            f.write(f"{struct.unpack('!Q', data[:8])[0]} {time.monotonic_ns()}\n")
            f.flush()


def gap(path):
    """Prints: received, lost, longest gap in ms, and the sequence numbers around it."""
    rows = [tuple(map(int, l.split())) for l in open(path) if l.strip()]
    if len(rows) < 2:
        print("received 0 lost 0 outage_ms nan")
        return
    seqs = sorted(r[0] for r in rows)
    lost = seqs[-1] - seqs[0] + 1 - len(set(seqs))
    worst = max(range(1, len(rows)), key=lambda i: rows[i][1] - rows[i - 1][1])
    ms = (rows[worst][1] - rows[worst - 1][1]) / 1e6
    print(f"received {len(rows)} lost {lost} outage_ms {ms:.1f} around_seq {rows[worst-1][0]}->{rows[worst][0]}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "recv":
        recv(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    elif cmd == "gap":
        gap(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
