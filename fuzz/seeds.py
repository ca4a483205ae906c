#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/TARGET/seed-*): a few valid
inputs per target, built here from the protocols' layouts, for libFuzzer to mutate. Checksums,
MACs and HMACs are left to the targets that fix them (their control byte), or computed here.

Run from anywhere: python3 fuzz/seeds.py. Idempotent: rewrites the seeds, keeps anything else.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip(s):
    return bytes(int(x) for x in s.split("."))


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def eth(dst, src, etype, payload):
    f = mac(dst) + mac(src) + struct.pack("!H", etype) + payload
    return f + b"\0" * max(0, 60 - len(f))


def ipv4(src, dst, proto, payload, ttl=64, options=b"", flags_frag=0x4000, ident=0):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, flags_frag,
                    ttl, proto, 0, ip(src), ip(dst)) + options
    c = csum(h)
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


def pseudo(src, dst, proto, l4):
    return ip(src) + ip(dst) + struct.pack("!BBH", 0, proto, len(l4))


def udp(src, dst, sport, dport, data):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = csum(pseudo(src, dst, 17, u) + u) or 0xFFFF
    return u[:6] + struct.pack("!H", c) + u[8:]


SYN_OPTS = bytes.fromhex("020405b40402080a000a1b2c0000000001030307")


def tcp(src, dst, sport, dport, seq, ack, flags, data=b"", opts=b"", win=64240):
    off = (20 + len(opts)) // 4
    t = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, win, 0, 0) + opts + data
    c = csum(pseudo(src, dst, 6, t) + t)
    return t[:16] + struct.pack("!H", c) + t[18:]


def icmp(typ, code, rest, data):
    m = struct.pack("!BBH", typ, code, 0) + rest + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac(sha) + ip(spa) + mac(tha) + ip(tpa)


# The seed's lab (perf/src/fixture.rs): box A, its VIPs, the client and the server.
CLIENT, SERVER = "192.168.0.100", "172.25.46.1"
LAN_VIP, WAN_VIP, LAN_IP, WAN_IP = "192.168.0.10", "172.25.46.100", "192.168.0.11", "172.25.46.101"
CLIENT_MAC, SERVER_MAC = "02:00:00:00:0c:64", "02:00:00:00:0d:01"
LAN_VMAC, WAN_VMAC = "00:00:5e:00:01:02", "00:00:5e:00:01:01"
LAN_MAC, WAN_MAC = "02:00:00:00:0a:0b", "02:00:00:00:0b:65"
BCAST = "ff:ff:ff:ff:ff:ff"


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    syn = tcp(CLIENT, SERVER, 40000, 80, 1000000, 0, 0x02, opts=SYN_OPTS)
    data_seg = tcp(SERVER, CLIENT, 80, 40000, 5000001, 1000001, 0x18, b"HTTP/1.1 200 OK\r\n")
    dns = udp(CLIENT, SERVER, 5000, 53, b"query")
    echo = icmp(8, 0, struct.pack("!HH", 0x1c46, 1), b"abcdefghijklmnop")
    udp_ip = ipv4(CLIENT, SERVER, 17, dns)
    unreach = icmp(3, 3, b"\0\0\0\0", udp_ip[:28])
    frag_needed = icmp(3, 4, struct.pack("!HH", 0, 1400), ipv4(CLIENT, SERVER, 6, syn)[:28])
    ttl_exceeded = icmp(11, 0, b"\0\0\0\0", udp_ip[:28])
    arp_req = arp(1, CLIENT_MAC, CLIENT, "00:00:00:00:00:00", LAN_VIP)
    arp_rep = arp(2, SERVER_MAC, SERVER, WAN_MAC, WAN_IP)

    write("wire_ethernet", "ipv4", eth(LAN_VMAC, CLIENT_MAC, 0x0800, udp_ip))
    write("wire_ethernet", "arp", eth(BCAST, CLIENT_MAC, 0x0806, arp_req))
    write("wire_ethernet", "vlan", eth(LAN_MAC, CLIENT_MAC, 0x8100, b"\0\x01\x08\x00" + udp_ip))

    write("wire_arp", "request", arp_req)
    write("wire_arp", "reply", arp_rep + b"\0" * 18)

    write("wire_ipv4", "udp", udp_ip)
    write("wire_ipv4", "options", ipv4(CLIENT, SERVER, 6, syn, options=b"\x94\x04\0\0"))
    write("wire_ipv4", "fragment", ipv4(CLIENT, SERVER, 17, dns, flags_frag=0x2000, ident=7))
    write("wire_ipv4", "ttl1", ipv4(CLIENT, SERVER, 1, echo, ttl=1))

    write("wire_tcp", "syn", ip(CLIENT) + ip(SERVER) + syn)
    write("wire_tcp", "data", ip(SERVER) + ip(CLIENT) + data_seg)
    write("wire_tcp", "rst", ip(SERVER) + ip(CLIENT) + tcp(SERVER, CLIENT, 80, 40000, 1, 0, 0x04))

    write("wire_udp", "dns", ip(CLIENT) + ip(SERVER) + dns)
    write("wire_udp", "padded", ip(CLIENT) + ip(SERVER) + dns + b"\0\0\0")

    write("wire_icmp", "echo", echo)
    write("wire_icmp", "unreach", unreach)
    write("wire_icmp", "frag_needed", frag_needed)
    write("wire_icmp", "ttl_exceeded", ttl_exceeded)

    # Pipeline: [ctl][len][frame]...; ctl bit 0 = wan, bit 1 = fix checksums, bits 2.. = ms.
    def rec(wan, frame, ms=1, fix=True):
        return bytes([(ms << 2) | (2 if fix else 0) | (1 if wan else 0)]) + struct.pack("!H", len(frame)) + frame

    lan_syn = eth(LAN_VMAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, SERVER, 6, tcp(CLIENT, SERVER, 41000, 80, 7, 0, 0x02, opts=SYN_OPTS)))
    lan_udp = eth(LAN_VMAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, SERVER, 17, dns))
    wan_udp_back = eth(WAN_VMAC, SERVER_MAC, 0x0800, ipv4(SERVER, WAN_VIP, 17, udp(SERVER, WAN_VIP, 53, 1024, b"answer")))
    wan_synack = eth(WAN_VMAC, SERVER_MAC, 0x0800, ipv4(SERVER, WAN_VIP, 6, tcp(SERVER, WAN_VIP, 80, 1024, 9, 8, 0x12, opts=SYN_OPTS)))
    lan_echo_vip = eth(LAN_VMAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, LAN_VIP, 1, echo))
    lan_echo_through = eth(LAN_VMAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, SERVER, 1, echo))
    wan_unreach = eth(WAN_VMAC, SERVER_MAC, 0x0800, ipv4(SERVER, WAN_VIP, 1, icmp(3, 3, b"\0\0\0\0", ipv4(WAN_VIP, SERVER, 17, udp(WAN_VIP, SERVER, 1024, 53, b"query"))[:28])))
    lan_ttl1 = eth(LAN_MAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, SERVER, 17, dns, ttl=1))
    wan_telnet = eth(WAN_MAC, SERVER_MAC, 0x0800, ipv4(SERVER, WAN_IP, 6, tcp(SERVER, WAN_IP, 1234, 23, 9, 0, 0x02)))
    lan_arp = eth(BCAST, CLIENT_MAC, 0x0806, arp_req)
    wan_arp = eth(WAN_MAC, SERVER_MAC, 0x0806, arp_rep)
    unknown_dst = eth(LAN_VMAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, "192.168.0.200", 17, udp(CLIENT, "192.168.0.200", 1, 2, b"x")))
    write("pipeline", "udp_out_and_back", rec(False, lan_udp) + rec(True, wan_udp_back))
    write("pipeline", "tcp_handshake", rec(False, lan_syn) + rec(True, wan_synack))
    write("pipeline", "icmp", rec(False, lan_echo_vip) + rec(False, lan_echo_through) + rec(True, wan_unreach))
    write("pipeline", "local", rec(False, lan_ttl1) + rec(True, wan_telnet) + rec(False, lan_arp) + rec(True, wan_arp))
    write("pipeline", "arp_pending", rec(False, unknown_dst, ms=0) + rec(False, unknown_dst, ms=63))

    # CARP: [ctl][frame]; ctl bit 0 = sign (the target fills the checksums and the HMAC).
    def carp(vhid, src, advskew=0, advbase=1, counter=0x1234_5678_9abc_def0):
        hdr = struct.pack("!BBBBBBHQ", 0x21, vhid, advskew, 7, 0, advbase, 0, counter) + b"\0" * 20
        return eth("01:00:5e:00:00:12", f"00:00:5e:00:01:{vhid:02x}", 0x0800,
                   ipv4(src, "224.0.0.18", 112, hdr, ttl=255))
    write("carp_advert", "wan", b"\x01" + carp(1, "172.25.46.102"))
    write("carp_advert", "lan_skew", b"\x01" + carp(2, "192.168.0.12", advskew=100, advbase=2))
    write("carp_advert", "unsigned", b"\x00" + carp(1, "172.25.46.102"))

    # Sync: [ctl][header + subheaders and records]; ctl bit 0 = seal (length, version, MAC).
    def hdr(seq, flags=0):
        return struct.pack("!BBHIIIQ", 0x81, flags, 0, 0x0a, 0x1234, 1000, seq)
    def sub(act, rec_len, recs):
        return struct.pack("!BBH", act, rec_len // 4, len(recs)) + b"".join(recs)
    sid = lambda i, c=0x0a: struct.pack("!QI", i, c)
    peer = struct.pack("!IIHBB", 1000, 66000, 64240, 7, 4)
    key = lambda s, sp, d, dp: ip(s) + ip(d) + struct.pack("!HH", sp, dp)
    ins = (sid(1) + struct.pack("!BBH", 6, 3, 0) + key(CLIENT, 40000, SERVER, 80)
           + key(WAN_VIP, 1024, SERVER, 80) + peer + peer + struct.pack("!IIIQQQQ", 10, 1, 2, 3, 4, 300, 400))
    assert len(ins) == 108
    updc = sid(1) + peer + peer + struct.pack("!IBBH", 10, 3, 0, 0)
    assert len(updc) == 44
    write("sync_datagram", "ins_upd_del", b"\x01" + hdr(1, 1) + sub(13, 108, [ins]) + sub(4, 44, [updc, updc]) + sub(7, 12, [sid(2)]))
    write("sync_datagram", "bulk", b"\x01" + hdr(2) + sub(5, 12, [sid(0, 0)]) + sub(10, 12, [struct.pack("!IIBBH", 0x0a, 0, 1, 0, 0)])
          + sub(10, 12, [struct.pack("!IIBBH", 0x0a, 55, 2, 0, 0)]) + sub(0, 4, [struct.pack("!I", 0x0b)]))
    write("sync_datagram", "ack_nack", b"\x01" + hdr(0) + sub(32, 8, [struct.pack("!Q", 9)]) + sub(33, 16, [struct.pack("!QQ", 3, 5)]))
    write("sync_datagram", "unknown_action", b"\x01" + hdr(3) + sub(99, 8, [b"\0" * 8]) + sub(2, 16, [sid(4) + b"\0" * 4]))

    # Config: the lab's single-box config, when present, and a minimal one.
    lab = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "lab-configs")
    for name in ("fw-a.toml", "fw-single.toml"):
        p = os.path.join(lab, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                write("config_file", name.replace(".toml", ""), f.read())

    reqs = [
        b'{"cmd":"status"}',
        b'{"cmd":"states","args":{"addr":"192.168.0.100","port":80,"proto":"tcp","limit":10}}',
        b'{"cmd":"config.check","args":{"path":"/etc/tandem/tandem.toml"}}',
        b'{"cmd":"capture.start","args":{"interface":"lan","count":5,"host":"10.0.0.1","port":53}}',
        b'{"cmd":"capture.poll","args":{"max":3}}',
        b'{"cmd":"states.kill","args":{"addr":"192.168.0.100","proto":"udp","rule":2}}',
        b'{"cmd":"states.kill","args":{"all":true}}',
        b'0a0B',
    ]
    write("control_request", "commands", b"\n".join(reqs))
    write("control_request", "reply", b'{"ok":false,"error":"unknown command"}')

    # DHCP: BOOTP messages (the target puts them in a frame): DISCOVER, REQUEST (selecting),
    # RELEASE.
    def bootp(kind, chaddr, ciaddr=b"\0" * 4, opts=b""):
        fixed = struct.pack("!BBBBIHH", 1, 1, 6, 0, 0x1234, 0, 0x8000) + ciaddr + b"\0" * 12
        fixed += chaddr + b"\0" * 10 + b"\0" * 192 + bytes([99, 130, 83, 99])
        return fixed + bytes([53, 1, kind]) + opts + b"\xff" + b"\0" * 20

    client = mac("02:00:00:00:d0:01")
    write("dhcp_request", "discover", bootp(1, client, opts=b"\x0c\x06client"))
    write("dhcp_request", "request", bootp(3, client, opts=b"\x36\x04" + ip("192.168.0.10") + b"\x32\x04" + ip("192.168.0.150")))
    write("dhcp_request", "release", bootp(7, client, ciaddr=ip("192.168.0.150")))


if __name__ == "__main__":
    main()
