//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Vocabulary used throughout:
//! - a *sum* is the ones' complement sum of 16-bit big-endian words, not yet complemented;
//! - a *checksum* is the complement of the folded sum, the value that goes into a header.
//!
//! A header verifies when the folded sum over it (checksum field included) is `0xffff`.
//!
//! # Zero
//!
//! For any data that is not all zeros the folded sum is in `1..=0xffff`, so a computed checksum
//! is in `0..=0xfffe`. A checksum of `0` is legal for IPv4, ICMP and TCP, but UDP uses `0` to
//! mean "no checksum" (RFC 768), so a UDP sender transmits a computed `0` as `0xffff` (the other
//! ones' complement zero, which verifies the same). See [`super::udp::checksum_on_wire`].

use std::net::Ipv4Addr;

/// Ones' complement sum of `data` as 16-bit big-endian words; an odd trailing byte is padded
/// with a zero low byte. The result is folded to at most `0xffff`, so up to 65537 sums can be
/// added in a `u32` without overflow before [`fold`].
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // 2^16 ≡ 1 (mod 0xffff), so adding 32-bit words and folding later gives the same ones'
    // complement sum as adding 16-bit words. A u64 accumulator takes 2^32 32-bit words before it
    // can overflow, far beyond any packet, so the loop needs no carry handling.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            + u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]))
            + u64::from(u32::from_be_bytes([c[8], c[9], c[10], c[11]]))
            + u64::from(u32::from_be_bytes([c[12], c[13], c[14], c[15]]));
    }
    let mut words = chunks.remainder().chunks_exact(4);
    for c in &mut words {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = words.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    fold64(acc)
}

/// Folds a 64-bit sum into 16 bits (returned in a `u32`), without a loop: each step at least
/// halves the width, and the bounds below show two steps per width are enough.
#[inline]
fn fold64(acc: u64) -> u32 {
    // <= 0xffff_ffff + 0xffff_ffff = 0x1_ffff_fffe, then <= 0xffff_fffe + 1.
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    u32::from(fold(acc as u32))
}

/// Folds the carries of a sum into 16 bits. A non-zero sum folds into `1..=0xffff`. Two steps,
/// no loop (this runs a few times per forwarded packet): any `u32` folds to at most
/// `0xffff + 0xffff = 0x1fffe`, which folds to at most `0xfffe + 1`.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum of `data`: the complement of its folded sum, ready to store in a header whose
/// checksum field was zero while summing.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The sum of the IPv4 pseudo-header of TCP and UDP (RFC 793 §3.1, RFC 768): source, destination,
/// zero + protocol, and the transport length (header + payload). Add it to [`sum`] of the segment.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(proto) + u32::from(len)
}

/// Adds partial sums (for example a pseudo-header and a payload folded separately) into one
/// folded sum. The result is a sum, not a checksum: complement it to store it.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u32 = 0;
    for &s in sums {
        acc += u32::from(s);
    }
    fold(acc)
}

/// Updates `csum` after a 16-bit word of the covered data changed from `old` to `new`.
///
/// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which unlike eqn. 2 of RFC 1141 never turns a
/// correct checksum into `0xffff` when the recomputed one would be `0`. It agrees with a full
/// recompute unless the data becomes all zeros, which no IPv4 header can.
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// [`update_u16`] for an aligned 32-bit field (two words).
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let sum = u32::from(!csum)
        + u32::from(!((old >> 16) as u16))
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(sum)
}

/// [`update_u32`] for an IPv4 address: the IP header checksum, and the TCP/UDP checksums whose
/// pseudo-header covers it, after NAT rewrote `old` into `new`.
#[inline]
pub fn update_addr(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(csum, u32::from(old), u32::from(new))
}

/// [`update_addr`] then [`update_u16`] in one sum and one fold: the TCP and UDP checksums after
/// NAT rewrote an address of the pseudo-header and the port beside it. The same result as the
/// two steps (the folded sum keeps its value modulo `0xffff`, and 0 only for a zero sum). UDP
/// callers keep their own rule for 0 (none sent) around it (`UdpPacket::translate`).
#[inline]
pub fn update_addr_port(
    csum: u16,
    (old_addr, new_addr): (Ipv4Addr, Ipv4Addr),
    (old_port, new_port): (u16, u16),
) -> u16 {
    let (old, new) = (u32::from(old_addr), u32::from(new_addr));
    let sum = u32::from(!csum)
        + u32::from(!((old >> 16) as u16))
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff)
        + u32::from(!old_port)
        + u32::from(new_port);
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious byte-pair loop, the reference the fast [`sum`] must agree with.
    fn naive_sum(data: &[u8]) -> u32 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u32::from);
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc
    }

    // The IPv4 header example of RFC 1071 §3 / Wikipedia: checksum 0xb861.
    const IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn golden_ipv4_header() {
        assert_eq!(data(&IPV4_HEADER), 0xb861);
        let mut h = IPV4_HEADER;
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(sum(&h)), 0xffff);
        assert_eq!(data(&h), 0);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
        assert_eq!(
            fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
    }

    #[test]
    fn edges() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(data(&[]), 0xffff);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(fold(sum(&[0xff; 64])), 0xffff);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(combine(&[0xffff, 0x0001]), 0x0001);
        assert_eq!(combine(&[]), 0);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 1, 200);
        let bytes = [10, 0, 0, 1, 192, 168, 1, 200, 0, 17, 0x01, 0x2c];
        assert_eq!(fold(pseudo_header_v4(src, dst, 17, 300)), fold(sum(&bytes)));
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 §4: HC = 0xdd2f, a word 0x5555 becomes 0x3285. Eqn. 2 of RFC 1141 gives
        // 0xffff; eqn. 3 gives 0x0000, what a recompute gives.
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn fast_sum_matches_naive_every_length() {
        // Every length 0..200, so each remainder path (16-, 4-, 2-, 1-byte) runs at every
        // alignment of the tail; all-0xff data maximises carries.
        let mut x: u32 = 0x1234_5678;
        let noise: Vec<u8> = (0..200)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let ones = [0xffu8; 200];
        for len in 0..200 {
            assert_eq!(
                fold(sum(&noise[..len])),
                fold(naive_sum(&noise[..len])),
                "len {len}"
            );
            assert_eq!(
                fold(sum(&ones[..len])),
                fold(naive_sum(&ones[..len])),
                "len {len}"
            );
        }
    }

    /// End-around carry until it fits: the definition the two-step folds must agree with.
    fn naive_fold(mut x: u64) -> u64 {
        while x > 0xffff {
            x = (x & 0xffff) + (x >> 16);
        }
        x
    }

    #[test]
    fn folds_agree_with_the_carry_loop_at_the_edges() {
        for x in [0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0xffff_0000, 0xffff_ffff] {
            assert_eq!(u64::from(fold(x)), naive_fold(u64::from(x)), "{x:#x}");
        }
        for x in [
            u64::MAX,
            u64::MAX - 1,
            0xffff_ffff_0000_0000,
            1 << 32,
            1 << 48,
        ] {
            assert_eq!(u64::from(fold64(x)), naive_fold(x), "{x:#x}");
        }
    }

    proptest! {
        #[test]
        fn address_and_port_in_one_fold_equal_the_two_steps(
            csum in any::<u16>(), old in any::<u32>(), new in any::<u32>(),
            old_port in any::<u16>(), new_port in any::<u16>(),
        ) {
            let (old, new) = (Ipv4Addr::from(old), Ipv4Addr::from(new));
            prop_assert_eq!(
                update_addr_port(csum, (old, new), (old_port, new_port)),
                update_u16(update_addr(csum, old, new), old_port, new_port)
            );
        }

        #[test]
        fn folds_agree_with_the_carry_loop(x in any::<u64>()) {
            prop_assert_eq!(u64::from(fold(x as u32)), naive_fold(u64::from(x as u32)));
            prop_assert_eq!(u64::from(fold64(x)), naive_fold(x));
        }

        #[test]
        fn fast_sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(fold(sum(&data)), fold(naive_sum(&data)));
        }

        #[test]
        fn fast_sum_matches_naive_unaligned(
            data in proptest::collection::vec(any::<u8>(), 1..200),
            skip in 0usize..8,
        ) {
            let skip = skip.min(data.len());
            prop_assert_eq!(fold(sum(&data[skip..])), fold(naive_sum(&data[skip..])));
        }

        /// Incremental update == full recompute, over random "packets" with a checksum field at
        /// bytes 10..12 (as in IPv4) and one word or one address rewritten.
        #[test]
        fn incremental_matches_recompute(
            mut pkt in proptest::collection::vec(any::<u8>(), 20..120),
            word in 0usize..59,
            new16 in any::<u16>(),
            new32 in any::<u32>(),
        ) {
            // A fixed non-zero first word keeps the data from becoming all zeros, the one case
            // where eqn. 3 and a recompute differ (0x0000 vs 0xffff, both verify).
            pkt[0] = 0x45;
            pkt.truncate(pkt.len() & !1);
            pkt[10] = 0;
            pkt[11] = 0;
            let csum = data(&pkt);

            // 16-bit update of any word but the first and the checksum itself.
            let words = pkt.len() / 2;
            let w = 1 + word % (words - 1);
            if w != 5 {
                let at = 2 * w;
                let old = u16::from_be_bytes([pkt[at], pkt[at + 1]]);
                let mut p = pkt.clone();
                p[at..at + 2].copy_from_slice(&new16.to_be_bytes());
                prop_assert_eq!(update_u16(csum, old, new16), data(&p));
            }

            // 32-bit update of the source address (bytes 12..16).
            let old = u32::from_be_bytes([pkt[12], pkt[13], pkt[14], pkt[15]]);
            let mut p = pkt.clone();
            p[12..16].copy_from_slice(&new32.to_be_bytes());
            let expect = data(&p);
            prop_assert_eq!(update_u32(csum, old, new32), expect);
            prop_assert_eq!(
                update_addr(csum, Ipv4Addr::from(old), Ipv4Addr::from(new32)),
                expect
            );
        }
    }
}
