//! The pcap writer's files, read back by tcpdump and tshark.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use tandem_control::pcap::{PcapWriter, Resolution};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// Ethernet + IPv4 (valid header checksum) + `l4` as protocol `proto`.
fn ipv4_frame(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + l4.len()).unwrap();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !u16::try_from(sum).unwrap();
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    u.extend_from_slice(&[0, 0]); // no checksum: allowed for UDP over IPv4
    u.extend_from_slice(payload);
    u
}

fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

fn icmp_echo(id: u16, seq: u16) -> Vec<u8> {
    let mut i = vec![8u8, 0, 0, 0];
    i.extend_from_slice(&id.to_be_bytes());
    i.extend_from_slice(&seq.to_be_bytes());
    let sum: u32 = i
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let ck = !u16::try_from(sum & 0xffff).unwrap();
    i[2..4].copy_from_slice(&ck.to_be_bytes());
    i
}

const CLIENT: [u8; 4] = [192, 168, 0, 100];
const SERVER: [u8; 4] = [172, 25, 46, 1];
const T0: u64 = 1_700_000_000_123_456_789;

fn three_frames() -> Vec<Vec<u8>> {
    vec![
        ipv4_frame(17, CLIENT, SERVER, &udp(40000, 5001, b"hello")),
        ipv4_frame(6, CLIENT, SERVER, &tcp_syn(40001, 80)),
        ipv4_frame(1, CLIENT, SERVER, &icmp_echo(7, 1)),
    ]
}

fn write_file(path: &Path, resolution: Resolution) {
    let f = BufWriter::new(File::create(path).unwrap());
    let mut w = PcapWriter::with_resolution(f, resolution).unwrap();
    for (i, frame) in three_frames().iter().enumerate() {
        let len = u32::try_from(frame.len()).unwrap();
        w.write_frame(T0 + i as u64 * 1_000_000, frame, len)
            .unwrap();
    }
    assert_eq!(w.frames(), 3);
    w.into_inner().unwrap();
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tandem-ctl-{}-{name}", std::process::id()))
}

fn tcpdump(path: &Path, extra: &[&str]) -> String {
    let out = Command::new("tcpdump")
        .args(["-r"])
        .arg(path)
        .args(["-nn"])
        .args(extra)
        .output()
        .expect("tcpdump is installed (scripts/setup)");
    assert!(
        out.status.success(),
        "tcpdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_three_lines(text: &str, tool: &str) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "{tool} printed:\n{text}");
    for l in &lines {
        assert!(l.contains("192.168.0.100"), "{tool}: {l}");
        assert!(l.contains("172.25.46.1"), "{tool}: {l}");
    }
}

#[test]
fn tcpdump_reads_back_three_frames_with_their_addresses_and_nanosecond_times() {
    let path = temp("nanos.pcap");
    write_file(&path, Resolution::Nanos);
    let text = tcpdump(&path, &["--time-stamp-precision=nano", "-tt"]);
    assert_three_lines(&text, "tcpdump");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(
            "1700000000.123456789 IP 192.168.0.100.40000 > 172.25.46.1.5001: UDP, length 5"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1]
            .starts_with("1700000000.124456789 IP 192.168.0.100.40001 > 172.25.46.1.80: Flags [S]"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("ICMP echo request, id 7, seq 1"),
        "{}",
        lines[2]
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn tcpdump_reads_microsecond_files_too() {
    let path = temp("micros.pcap");
    write_file(&path, Resolution::Micros);
    let text = tcpdump(&path, &["-tt"]);
    assert_three_lines(&text, "tcpdump");
    assert!(text.starts_with("1700000000.123456 IP"), "{text}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn tshark_reads_back_three_frames() {
    let path = temp("tshark.pcap");
    write_file(&path, Resolution::Nanos);
    let out = match Command::new("tshark").arg("-r").arg(&path).output() {
        Ok(o) => o,
        Err(e) => {
            println!("note: tshark not runnable ({e}): tshark half of the test skipped");
            std::fs::remove_file(&path).unwrap();
            return;
        }
    };
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_three_lines(&text, "tshark");
    assert!(text.contains("UDP"), "{text}");
    assert!(text.contains("TCP"), "{text}");
    assert!(text.contains("ICMP"), "{text}");
    std::fs::remove_file(&path).unwrap();
}
