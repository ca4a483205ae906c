//! A writer of classic libpcap files, what `tandemctl capture --write` produces and tcpdump,
//! tshark and Wireshark read.
//!
//! Format (all fields little-endian here; readers tell the byte order from the magic):
//! a 24-byte file header `magic u32, version_major u16 = 2, version_minor u16 = 4,
//! thiszone i32 = 0, sigfigs u32 = 0, snaplen u32, linktype u32 = 1 (Ethernet)`, then per frame
//! a 16-byte record header `ts_sec u32, ts_frac u32, incl_len u32, orig_len u32` and `incl_len`
//! bytes. The magic says what `ts_frac` counts: 0xa1b2c3d4 microseconds, 0xa1b23c4d
//! nanoseconds.

use std::io::{self, Write};

/// Magic of a file whose timestamps count microseconds.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of a file whose timestamps count nanoseconds.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// The largest frame the file says it holds; longer frames are cut to it.
pub const SNAPLEN: u32 = 65535;

/// What the timestamps of a file count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    Micros,
    #[default]
    Nanos,
}

/// Writes a pcap file header, then one record per [`PcapWriter::write_frame`].
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    resolution: Resolution,
    frames: u64,
}

impl<W: Write> PcapWriter<W> {
    /// A writer with nanosecond timestamps; writes the file header.
    pub fn new(out: W) -> io::Result<PcapWriter<W>> {
        PcapWriter::with_resolution(out, Resolution::Nanos)
    }

    /// A writer with timestamps of the given resolution; writes the file header.
    pub fn with_resolution(mut out: W, resolution: Resolution) -> io::Result<PcapWriter<W>> {
        let magic = match resolution {
            Resolution::Micros => MAGIC_MICROS,
            Resolution::Nanos => MAGIC_NANOS,
        };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            resolution,
            frames: 0,
        })
    }

    /// Appends one frame captured at `ts_ns` (nanoseconds since the Unix epoch) whose length on
    /// the wire was `orig_len` (at least `bytes.len()`). Bytes past [`SNAPLEN`] are cut.
    pub fn write_frame(&mut self, ts_ns: u64, bytes: &[u8], orig_len: u32) -> io::Result<()> {
        let incl = &bytes[..bytes.len().min(SNAPLEN as usize)];
        let incl_len = u32::try_from(incl.len()).unwrap_or(SNAPLEN);
        let orig_len = orig_len.max(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        let secs = u32::try_from(ts_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let nanos = ts_ns % 1_000_000_000;
        let frac = match self.resolution {
            Resolution::Micros => nanos / 1000,
            Resolution::Nanos => nanos,
        };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        // frac < 10^9 fits in a u32.
        h[4..8].copy_from_slice(&u32::try_from(frac).unwrap_or(0).to_le_bytes());
        h[8..12].copy_from_slice(&incl_len.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(incl)?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer, flushed.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn header_and_record_bytes() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_frame(1_700_000_000_123_456_789, &[0xaa, 0xbb], 60)
            .unwrap();
        let b = w.into_inner().unwrap();
        assert_eq!(
            &b[..24],
            &[
                0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
        assert_eq!(&b[24..28], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&b[28..32], &123_456_789u32.to_le_bytes());
        assert_eq!(&b[32..36], &2u32.to_le_bytes());
        assert_eq!(&b[36..40], &60u32.to_le_bytes());
        assert_eq!(&b[40..], &[0xaa, 0xbb]);
    }

    #[test]
    fn microsecond_files_count_microseconds_and_orig_len_is_never_short() {
        let mut w = PcapWriter::with_resolution(Vec::new(), Resolution::Micros).unwrap();
        w.write_frame(2_000_000_999, &[1, 2, 3], 0).unwrap();
        assert_eq!(w.frames(), 1);
        let b = w.into_inner().unwrap();
        assert_eq!(&b[0..4], &MAGIC_MICROS.to_le_bytes());
        assert_eq!(&b[24..28], &2u32.to_le_bytes());
        assert_eq!(&b[28..32], &0u32.to_le_bytes());
        assert_eq!(&b[36..40], &3u32.to_le_bytes());
    }
}
