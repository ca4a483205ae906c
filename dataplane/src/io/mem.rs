//! An in-memory [`Port`] for tests and benchmarks: frames injected on one side come out of
//! `recv`, frames sent are collected. Frames move by swapping boxed buffers: no copy, and no
//! allocation once the spare pool holds as many buffers as are in flight.

use std::collections::VecDeque;

use super::{Frame, Port};

#[derive(Debug, Default)]
pub struct MemPort {
    inbox: VecDeque<Frame>,
    outbox: VecDeque<Frame>,
    spare: Vec<Frame>,
    /// Upper bound of the outbox; frames beyond it are refused by `send` (a full TX ring).
    pub tx_capacity: Option<usize>,
}

impl MemPort {
    pub fn new() -> MemPort {
        MemPort::default()
    }

    /// Queues a frame (a copy of `bytes`) to be received.
    pub fn inject(&mut self, bytes: &[u8]) {
        let mut f = self.spare.pop().unwrap_or_default();
        let n = bytes.len().min(f.buf.len());
        f.buf[..n].copy_from_slice(&bytes[..n]);
        f.len = n;
        self.inbox.push_back(f);
    }

    /// Queues a frame to be received, taking its buffer (no copy).
    pub fn inject_frame(&mut self, frame: Frame) {
        self.inbox.push_back(frame);
    }

    /// Takes the frames sent so far, oldest first.
    pub fn take_sent(&mut self) -> Vec<Frame> {
        self.outbox.drain(..).collect()
    }

    /// Moves sent frames back to the spare pool (benchmarks: recycle without allocating).
    pub fn recycle_sent(&mut self) -> usize {
        let n = self.outbox.len();
        self.spare.extend(self.outbox.drain(..));
        n
    }

    /// Takes the oldest sent frame, if any.
    pub fn pop_sent(&mut self) -> Option<Frame> {
        self.outbox.pop_front()
    }

    pub fn pending_rx(&self) -> usize {
        self.inbox.len()
    }

    pub fn sent_len(&self) -> usize {
        self.outbox.len()
    }

    /// Hands a buffer to the spare pool (so later swaps need not allocate).
    pub fn add_spare(&mut self, frame: Frame) {
        self.spare.push(frame);
    }
}

impl Port for MemPort {
    fn recv(&mut self, frames: &mut [Frame]) -> usize {
        let mut n = 0;
        while n < frames.len() {
            let Some(mut f) = self.inbox.pop_front() else {
                break;
            };
            std::mem::swap(&mut frames[n], &mut f);
            self.spare.push(f);
            n += 1;
        }
        n
    }

    fn send(&mut self, frames: &mut [Frame]) -> usize {
        let room = self
            .tx_capacity
            .map_or(usize::MAX, |c| c.saturating_sub(self.outbox.len()));
        let n = frames.len().min(room);
        for slot in frames[..n].iter_mut() {
            let mut replacement = self.spare.pop().unwrap_or_default();
            std::mem::swap(slot, &mut replacement);
            self.outbox.push_back(replacement);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_and_sent_frames_are_collected() {
        let mut p = MemPort::new();
        p.inject(&[1, 2, 3]);
        p.inject(&[4, 5]);
        let mut batch = vec![Frame::new(), Frame::new(), Frame::new()];
        assert_eq!(p.recv(&mut batch), 2);
        assert_eq!(batch[0].bytes(), &[1, 2, 3]);
        assert_eq!(batch[1].bytes(), &[4, 5]);
        assert_eq!(p.send(&mut batch[..2]), 2);
        let sent = p.take_sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].bytes(), &[4, 5]);
    }

    #[test]
    fn a_full_tx_ring_refuses_the_rest() {
        let mut p = MemPort {
            tx_capacity: Some(1),
            ..MemPort::default()
        };
        let mut batch = vec![Frame::from_bytes(&[1]), Frame::from_bytes(&[2])];
        assert_eq!(p.send(&mut batch), 1);
        assert_eq!(
            batch[1].bytes(),
            &[2],
            "the refused frame stays in its slot"
        );
    }
}
