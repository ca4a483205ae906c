//! Frames in and out of interfaces.
//!
//! The pipeline works on one frame at a time, in place, in a buffer of [`FRAME_SIZE`] bytes
//! (a UMEM frame for AF_XDP, a boxed buffer for the in-memory port), and answers with a
//! [`Verdict`]. A frame may grow (an ICMP error quotes the packet it answers), which is why the
//! pipeline sees the whole buffer and not just the received length.

use crate::IfIndex;

#[cfg(feature = "afxdp")]
pub mod afxdp;

/// Size of one frame buffer: a UMEM chunk, and the in-memory port's buffers alike.
pub const FRAME_SIZE: usize = 2048;

/// What becomes of a frame after the pipeline has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Dropped or consumed; the reason, if any, is already counted.
    Drop,
    /// Rewritten in place: send the first `len` bytes of the buffer on `out_if`.
    Tx { out_if: IfIndex, len: usize },
}

pub mod mem;

/// One frame buffer and the length of the frame in it. Buffers move between ports and batches by
/// swapping boxes, so a frame is never copied and, once the pools are filled, never allocated.
#[derive(Clone)]
pub struct Frame {
    pub buf: Box<[u8; FRAME_SIZE]>,
    pub len: usize,
}

impl Frame {
    pub fn new() -> Frame {
        Frame {
            buf: Box::new([0; FRAME_SIZE]),
            len: 0,
        }
    }

    /// A frame holding a copy of `bytes` (at most [`FRAME_SIZE`] of them).
    pub fn from_bytes(bytes: &[u8]) -> Frame {
        let mut f = Frame::new();
        let n = bytes.len().min(FRAME_SIZE);
        f.buf[..n].copy_from_slice(&bytes[..n]);
        f.len = n;
        f
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for Frame {
    fn default() -> Frame {
        Frame::new()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({} bytes)", self.len)
    }
}

/// The ports one worker owns, as the one driver loop ([`crate::pipeline::Pipeline::round`])
/// sees them: the AF_XDP sockets of a box (`afxdp::WorkerPorts`) and the in-memory ports of
/// tests and benchmarks (`[mem::MemPort]`) alike, so that what the tests and benchmarks measure
/// is the loop the box runs.
pub trait Ports {
    /// One batched round: receives up to `budget` frames, runs `handler(in_if, buf, len)` on
    /// each (`buf` the whole [`FRAME_SIZE`] buffer, the frame in its first `len` bytes), and
    /// puts the frames it forwards on their interfaces' TX side, batched. Returns how many
    /// frames were received. Frames a full TX side refuses are dropped and counted by the port.
    fn poll<F>(&mut self, budget: usize, handler: &mut F) -> usize
    where
        F: FnMut(IfIndex, &mut [u8], usize) -> Verdict,
    {
        self.poll_looking(budget, &mut NoLook, handler)
    }

    /// [`poll`](Ports::poll), showing each received batch to `look` (every frame, then the
    /// end) before `handler` runs on any of its frames: so that the pipeline can start loading
    /// the batch's states into the cache (`pipeline::lookahead`).
    fn poll_looking<L, F>(&mut self, budget: usize, look: &mut L, handler: &mut F) -> usize
    where
        L: Look,
        F: FnMut(IfIndex, &mut [u8], usize) -> Verdict;

    /// Sends a copy of `bytes` on `out_if` (frames the pipeline or the control plane made:
    /// ARP, CARP adverts, ICMP). False if the port refused it (counted by the port).
    fn send_copy(&mut self, out_if: IfIndex, bytes: &[u8]) -> bool;
}

/// What sees a received batch before it is handled (see [`Ports::poll_looking`]).
pub trait Look {
    /// One frame of the batch, as received.
    fn frame(&mut self, bytes: &[u8]);
    /// The batch's frames have all been shown; handling starts.
    fn end(&mut self);
}

/// A [`Look`] that looks at nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLook;

impl Look for NoLook {
    #[inline]
    fn frame(&mut self, _: &[u8]) {}
    #[inline]
    fn end(&mut self) {}
}
