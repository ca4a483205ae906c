//! The pcap files `tandemctl capture --write` produces (tcpdump, tshark and Wireshark read
//! them): classic libpcap format, Ethernet link type, nanosecond timestamps by default, written
//! by the `pcap-file` crate. This wrapper fixes tandem's choices (little-endian, snaplen 65535,
//! frames longer than that cut) and counts the frames.
//!
//! The format: a 24-byte file header (magic, version 2.4, snaplen, link type), then per frame a
//! 16-byte record header (seconds, fraction, included and original length) and the bytes. The
//! magic says what the fraction counts: 0xa1b2c3d4 microseconds, 0xa1b23c4d nanoseconds.

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::{DataLink, Endianness, TsResolution};

/// Magic of a file whose timestamps count microseconds.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of a file whose timestamps count nanoseconds.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
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
    inner: pcap_file::pcap::PcapWriter<Shared<W>>,
    /// The same writer, for `flush` and `into_inner` (pcap-file's writer gives no access to
    /// its own until it is consumed).
    out: Rc<RefCell<W>>,
    frames: u64,
}

/// A writer shared with the pcap-file writer (one thread; borrowed only while writing).
#[derive(Debug)]
struct Shared<W>(Rc<RefCell<W>>);

impl<W: Write> Write for Shared<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

fn io_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Write> PcapWriter<W> {
    /// A writer with nanosecond timestamps; writes the file header.
    pub fn new(out: W) -> io::Result<PcapWriter<W>> {
        PcapWriter::with_resolution(out, Resolution::Nanos)
    }

    /// A writer with timestamps of the given resolution; writes the file header.
    pub fn with_resolution(out: W, resolution: Resolution) -> io::Result<PcapWriter<W>> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: match resolution {
                Resolution::Micros => TsResolution::MicroSecond,
                Resolution::Nanos => TsResolution::NanoSecond,
            },
            endianness: Endianness::Little,
        };
        let out = Rc::new(RefCell::new(out));
        let inner = pcap_file::pcap::PcapWriter::with_header(Shared(out.clone()), header)
            .map_err(io_err)?;
        Ok(PcapWriter {
            inner,
            out,
            frames: 0,
        })
    }

    /// Appends one frame captured at `ts_ns` (nanoseconds since the Unix epoch) whose length on
    /// the wire was `orig_len` (at least `bytes.len()`). Bytes past [`SNAPLEN`] are cut.
    pub fn write_frame(&mut self, ts_ns: u64, bytes: &[u8], orig_len: u32) -> io::Result<()> {
        let incl = &bytes[..bytes.len().min(SNAPLEN as usize)];
        let orig_len = orig_len.max(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        // The format's seconds are 32 bits: a clock past 2106 is written as its last second.
        let ts = Duration::from_nanos(ts_ns.min(u64::from(u32::MAX) * 1_000_000_000 + 999_999_999));
        self.inner
            .write_packet(&PcapPacket::new(ts, orig_len, incl))
            .map_err(io_err)?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.borrow_mut().flush()
    }

    /// The underlying writer, flushed.
    pub fn into_inner(self) -> io::Result<W> {
        drop(self.inner.into_writer());
        let out = Rc::try_unwrap(self.out)
            .map_err(|_| io::Error::other("the pcap writer is still shared"))?;
        let mut out = out.into_inner();
        out.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
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
