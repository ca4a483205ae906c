//! Where each chunk of the UMEM is: the free pool, the fill and TX rings, or the pipeline.

use xsk_rs::FrameDesc;

use super::{WorkerPorts, CHUNK_SIZE};

/// Where the frames are, from [`WorkerPorts::frames_accounted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAudit {
    /// Chunks in the UMEM.
    pub total: u32,
    /// In the free pool.
    pub free: u32,
    /// Given to fill rings and not received yet.
    pub in_fill: u32,
    /// Given to TX rings and not completed yet.
    pub in_tx: u32,
}

/// Where one chunk is (debug builds only): every move asserts the place it comes from.
#[cfg(debug_assertions)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Free,
    Fill(u16),
    Pipeline,
    Tx(u16),
}

/// `Place` exists in release builds too, so that `mark` keeps one signature; only debug builds
/// store it.
#[cfg(not(debug_assertions))]
#[derive(Debug, Clone, Copy)]
pub(super) enum Place {
    Free,
    Pipeline,
    Fill,
    Tx,
}

impl Place {
    #[cfg(debug_assertions)]
    pub(super) fn fill(s: usize) -> Self {
        Self::Fill(s as u16)
    }

    #[cfg(debug_assertions)]
    pub(super) fn tx(s: usize) -> Self {
        Self::Tx(s as u16)
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn fill(_s: usize) -> Self {
        Self::Fill
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn tx(_s: usize) -> Self {
        Self::Tx
    }
}

pub(super) fn chunk_index(desc: &FrameDesc) -> usize {
    desc.addr() / CHUNK_SIZE as usize
}

impl WorkerPorts {
    /// Checks that every chunk is in exactly one place: free + in fill rings + in TX rings ==
    /// total, and no chunk twice in the pool. Debug builds also check each chunk's tracked
    /// place against the counts.
    pub fn frames_accounted(&self) -> Result<FrameAudit, String> {
        let audit = FrameAudit {
            total: self.total,
            free: self.pool.len() as u32,
            in_fill: self.socks.iter().map(|s| s.in_fill).sum(),
            in_tx: self.socks.iter().map(|s| s.in_tx).sum(),
        };
        if audit.free + audit.in_fill + audit.in_tx != audit.total {
            return Err(format!("frames do not add up: {audit:?}"));
        }
        let mut seen = vec![false; self.total as usize];
        for desc in &self.pool {
            let i = chunk_index(desc);
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                Some(_) => return Err(format!("chunk {i} is in the free pool twice")),
                None => return Err(format!("chunk {i} is outside the UMEM")),
            }
        }
        #[cfg(debug_assertions)]
        {
            for (s, sock) in self.socks.iter().enumerate() {
                let fill = self.places.iter().filter(|p| **p == Place::fill(s)).count();
                let tx = self.places.iter().filter(|p| **p == Place::tx(s)).count();
                if fill != sock.in_fill as usize || tx != sock.in_tx as usize {
                    return Err(format!(
                        "socket {s}: tracked {fill} in fill, {tx} in tx; counted {} and {}",
                        sock.in_fill, sock.in_tx
                    ));
                }
            }
            let free = self.places.iter().filter(|p| **p == Place::Free).count();
            if free != self.pool.len() {
                return Err(format!(
                    "tracked {free} free, pool holds {}",
                    self.pool.len()
                ));
            }
        }
        Ok(audit)
    }

    pub(super) fn free(&mut self, desc: FrameDesc, from: Place) {
        self.mark(&desc, from, Place::Free);
        self.pool.push(desc);
    }

    #[cfg(debug_assertions)]
    pub(super) fn mark(&mut self, desc: &FrameDesc, from: Place, to: Place) {
        let c = chunk_index(desc);
        let place = self.places.get_mut(c).expect("descriptor outside the UMEM");
        assert_eq!(
            *place, from,
            "chunk {c} moves to {to:?} from {place:?}, expected {from:?}"
        );
        *place = to;
    }

    #[cfg(not(debug_assertions))]
    #[inline(always)]
    pub(super) fn mark(&mut self, _desc: &FrameDesc, _from: Place, _to: Place) {}
}
