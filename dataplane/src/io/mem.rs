//! In-memory [`Ports`] for tests and benchmarks: frames injected on a port are received by the
//! next round, frames sent are collected. Frames move by swapping boxed buffers: no copy, and no
//! allocation once the spare pool holds as many buffers as are in flight.

use std::collections::VecDeque;

use super::{Frame, Look, Ports, Verdict};
use crate::IfIndex;

#[derive(Debug, Default)]
pub struct MemPort {
    inbox: VecDeque<Frame>,
    outbox: VecDeque<Frame>,
    spare: Vec<Frame>,
    /// Upper bound of the outbox; frames beyond it are refused (a full TX ring).
    pub tx_capacity: Option<usize>,
    /// Frames refused because the outbox was full.
    pub tx_refused: u64,
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

impl MemPort {
    /// Takes a sent frame unless the outbox is at `tx_capacity` (a full TX ring): then the frame
    /// comes back, and the refusal is counted.
    fn push_sent(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.tx_capacity.is_some_and(|c| self.outbox.len() >= c) {
            self.tx_refused += 1;
            return Err(frame);
        }
        self.outbox.push_back(frame);
        Ok(())
    }
}

/// A worker's in-memory ports, indexed by [`IfIndex`]. Frames are handled in place in their own
/// buffers and move to the output port's outbox: no copy, and once the spare pools hold as many
/// buffers as are in flight, no allocation.
impl Ports for [MemPort] {
    fn poll_looking<L, F>(&mut self, budget: usize, look: &mut L, handler: &mut F) -> usize
    where
        L: Look,
        F: FnMut(IfIndex, &mut [u8], usize) -> Verdict,
    {
        let mut received = 0;
        for i in 0..self.len() {
            let Ok(in_if) = IfIndex::try_from(i) else {
                break;
            };
            // A port's share of the budget is its batch, shown whole before it is handled.
            let batch = self[i].inbox.len().min(budget - received);
            if batch > 0 {
                self[i]
                    .inbox
                    .iter()
                    .take(batch)
                    .for_each(|f| look.frame(f.bytes()));
                look.end();
            }
            while received < budget {
                let Some(mut f) = self[i].inbox.pop_front() else {
                    break;
                };
                received += 1;
                let Verdict::Tx { out_if, len } = handler(in_if, &mut f.buf[..], f.len) else {
                    self[i].spare.push(f);
                    continue;
                };
                f.len = len;
                let refused = match self.get_mut(usize::from(out_if)) {
                    Some(out) => out.push_sent(f).err(),
                    None => Some(f),
                };
                if let Some(f) = refused {
                    self[i].spare.push(f);
                }
            }
        }
        received
    }

    fn send_copy(&mut self, out_if: IfIndex, bytes: &[u8]) -> bool {
        let Some(out) = self.get_mut(usize::from(out_if)) else {
            return false;
        };
        let mut f = out.spare.pop().unwrap_or_default();
        let n = bytes.len().min(f.buf.len());
        f.buf[..n].copy_from_slice(&bytes[..n]);
        f.len = n;
        match out.push_sent(f) {
            Ok(()) => true,
            Err(f) => {
                out.spare.push(f);
                false
            }
        }
    }
}

/// Arrays and vectors of ports are polled as the slice they hold.
impl<const N: usize> Ports for [MemPort; N] {
    fn poll_looking<L, F>(&mut self, budget: usize, look: &mut L, handler: &mut F) -> usize
    where
        L: Look,
        F: FnMut(IfIndex, &mut [u8], usize) -> Verdict,
    {
        self[..].poll_looking(budget, look, handler)
    }

    fn send_copy(&mut self, out_if: IfIndex, bytes: &[u8]) -> bool {
        self[..].send_copy(out_if, bytes)
    }
}

impl Ports for Vec<MemPort> {
    fn poll_looking<L, F>(&mut self, budget: usize, look: &mut L, handler: &mut F) -> usize
    where
        L: Look,
        F: FnMut(IfIndex, &mut [u8], usize) -> Verdict,
    {
        self[..].poll_looking(budget, look, handler)
    }

    fn send_copy(&mut self, out_if: IfIndex, bytes: &[u8]) -> bool {
        self[..].send_copy(out_if, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwards everything received on 0 to 1 and drops what 1 receives.
    fn cross(in_if: IfIndex, _buf: &mut [u8], len: usize) -> Verdict {
        match in_if {
            0 => Verdict::Tx { out_if: 1, len },
            _ => Verdict::Drop,
        }
    }

    #[test]
    fn frames_are_handled_in_order_and_sent_frames_are_collected() {
        let mut p = [MemPort::new(), MemPort::new()];
        p[0].inject(&[1, 2, 3]);
        p[0].inject(&[4, 5]);
        p[1].inject(&[6]);
        assert_eq!(p.poll(64, &mut cross), 3);
        let sent = p[1].take_sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].bytes(), &[1, 2, 3]);
        assert_eq!(sent[1].bytes(), &[4, 5]);
        assert!(
            p[0].take_sent().is_empty(),
            "the dropped frame went nowhere"
        );
        assert_eq!(p.iter().map(MemPort::pending_rx).sum::<usize>(), 0);
    }

    #[test]
    fn a_round_takes_at_most_its_budget() {
        let mut p = [MemPort::new(), MemPort::new()];
        for b in 0..5u8 {
            p[0].inject(&[b]);
        }
        assert_eq!(p.poll(3, &mut cross), 3);
        assert_eq!(p[0].pending_rx(), 2);
        assert_eq!(p.poll(3, &mut cross), 2);
    }

    #[test]
    fn a_full_tx_ring_refuses_the_rest_and_counts_them() {
        let mut p = [
            MemPort::new(),
            MemPort {
                tx_capacity: Some(1),
                ..MemPort::default()
            },
        ];
        p[0].inject(&[1]);
        p[0].inject(&[2]);
        assert_eq!(p.poll(64, &mut cross), 2);
        assert_eq!(p[1].sent_len(), 1);
        assert_eq!(p[1].tx_refused, 1);
        assert!(!p.send_copy(1, &[3]), "still full");
        assert_eq!(p[1].tx_refused, 2);
        assert!(p.send_copy(0, &[3]));
        assert_eq!(p[0].take_sent()[0].bytes(), &[3]);
    }
}
