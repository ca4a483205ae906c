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
