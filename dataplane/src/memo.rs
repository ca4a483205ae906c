//! A small direct-mapped memo: a worker's private copy of recent answers of a shared lookup,
//! one per slot, trusted while the stamp of what they were copied from stays put (a route
//! table's id, the neighbour cache's change generation) and emptied when it moves. The fronts
//! of [`crate::route::RouteTable`] and [`crate::neigh::NeighCache`] are both one.

/// Recent `K -> V` answers, `slots` of them.
#[derive(Debug)]
pub(crate) struct Memo<K, V> {
    stamp: u64,
    slots: Box<[Option<(K, V)>]>,
    /// 32 - log2(slots): the hash product's top bits pick the slot.
    shift: u32,
}

impl<K: Copy + Eq, V: Copy> Memo<K, V> {
    /// A memo of `slots` entries (rounded up to a power of two, at least 1), stamped 0.
    pub(crate) fn new(slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        Memo {
            stamp: 0,
            slots: vec![None; n].into_boxed_slice(),
            shift: 32 - n.trailing_zeros().min(32),
        }
    }

    /// The answer for `key` (whose bits, folded into 32, are `bits`): the memo's copy when it
    /// holds one taken under `stamp`, else `lookup`'s, kept if there is one (a miss is not
    /// remembered: it is the slow path anyway).
    // Always inlined: the call and its register saves would cost more than a hit's few
    // instructions (with a third call site the compiler stopped inlining it).
    #[inline(always)]
    pub(crate) fn get(
        &mut self,
        stamp: u64,
        key: K,
        bits: u32,
        lookup: impl FnOnce() -> Option<V>,
    ) -> Option<V> {
        if stamp != self.stamp {
            self.slots.fill(None);
            self.stamp = stamp;
        }
        let k = self.slot(bits);
        if let Some((a, v)) = self.slots[k] {
            if a == key {
                return Some(v);
            }
        }
        let v = lookup()?;
        self.slots[k] = Some((key, v));
        Some(v)
    }

    /// The slot of a key whose bits are `bits`. Fibonacci hashing: the product's top bits
    /// depend on every bit of `bits` (u64: a one-slot memo shifts by 32).
    #[inline(always)]
    fn slot(&self, bits: u32) -> usize {
        let h = u64::from(bits.wrapping_mul(0x9e37_79b9));
        (h >> self.shift) as usize & (self.slots.len() - 1)
    }

    /// The memo's copy for `key` taken under `stamp`, if it holds one; changes nothing (a
    /// guess that must not evict what the established flows use).
    #[inline(always)]
    pub(crate) fn peek(&self, stamp: u64, key: K, bits: u32) -> Option<V> {
        if stamp != self.stamp {
            return None;
        }
        match self.slots[self.slot(bits)] {
            Some((a, v)) if a == key => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn one_slot_answers_each_key_right_and_a_new_stamp_forgets() {
        // One slot: the shift is 32, every key lands in slot 0 and evicts the last.
        let mut m: Memo<u32, u32> = Memo::new(1);
        let mut lookups = 0;
        let mut get = |m: &mut Memo<u32, u32>, stamp, key: u32| {
            m.get(stamp, key, key, || {
                lookups += 1;
                Some(key * 10)
            })
        };
        assert_eq!(get(&mut m, 1, 7), Some(70));
        assert_eq!(get(&mut m, 1, 7), Some(70));
        assert_eq!(get(&mut m, 1, 8), Some(80));
        assert_eq!(get(&mut m, 1, 7), Some(70));
        // 7, 8, 7 again (evicted by 8): three lookups, the repeat of 7 served from the slot.
        assert_eq!(lookups, 3);
        // A new stamp: the copy of 7 is not served.
        let mut fresh = 0;
        assert_eq!(
            m.get(2, 7, 7, || {
                fresh += 1;
                Some(71)
            }),
            Some(71)
        );
        assert_eq!(fresh, 1);
    }

    #[test]
    fn a_peek_answers_from_the_memo_only_and_changes_nothing() {
        let mut m: Memo<u32, u32> = Memo::new(64);
        assert_eq!(m.peek(1, 5, 5), None, "an empty memo");
        assert_eq!(m.get(1, 5, 5, || Some(50)), Some(50));
        assert_eq!(m.peek(1, 5, 5), Some(50));
        assert_eq!(m.peek(1, 6, 6), None, "another key");
        assert_eq!(m.peek(2, 5, 5), None, "another stamp");
        // The peeks stored nothing and emptied nothing: the copy of 5 is still served under
        // stamp 1, 6 is looked up.
        let mut lookups = 0;
        let mut get = |m: &mut Memo<u32, u32>, key: u32| {
            m.get(1, key, key, || {
                lookups += 1;
                Some(key * 10)
            })
        };
        assert_eq!(get(&mut m, 5), Some(50));
        assert_eq!(get(&mut m, 6), Some(60));
        assert_eq!(lookups, 1);
    }

    #[test]
    fn a_miss_is_not_remembered() {
        let mut m: Memo<u32, u32> = Memo::new(64);
        assert_eq!(m.get(1, 5, 5, || None), None);
        assert_eq!(m.get(1, 5, 5, || Some(50)), Some(50));
        assert_eq!(m.get(1, 5, 5, || None), Some(50));
    }
}
