//! Per-field bit vectors (Lakshman and Stiliadis's parallel bit-vector classifier), for the
//! rulesets a one-dimensional cut cannot help: wildcards on every field.
//!
//! Each of destination port, destination and source cuts its key space into intervals inside
//! which every entry's criterion on that field is constant, and keeps for each interval one bit
//! per entry (set: the entry's criterion holds there). A packet binary-searches its interval in
//! each field, ANDs the three rows word by word, and the lowest set bit is the first entry that
//! can match on all three; the entry's full test (source port, protocol) confirms it or the next
//! set bit is tried. 1000 rules are 16 words a row: three searches and at most 16 ANDs, where the
//! list scanned 1000 entries.
//!
//! Memory: a field with `k` intervals costs `k * ceil(n / 64)` words. The index is built only
//! under [`MAX_WORDS`]; above that the class keeps its list.

use super::{cut_points, key_ranges, Entry, Key};

/// The most words of bits one class may hold, all three fields together (8 MiB).
pub(super) const MAX_WORDS: usize = 1 << 20;

/// One field's intervals and their rows.
#[derive(Debug, Default)]
struct Field {
    /// Start of each interval, ascending; `bounds[0] == 0`.
    bounds: Box<[u32]>,
    /// `bounds.len()` rows of `words` words.
    bits: Box<[u64]>,
}

impl Field {
    fn build(
        entries: &[Entry],
        key: Key,
        sets: &[Box<[(u32, u32)]>],
        words: usize,
        budget: usize,
    ) -> Option<Field> {
        let ranges: Vec<Vec<(u32, u32)>> =
            entries.iter().map(|e| key_ranges(e, key, sets)).collect();
        let pts = cut_points(&ranges);
        if pts.len().checked_mul(words)? > budget {
            return None;
        }
        let mut bits = vec![0u64; pts.len() * words];
        for (i, rs) in ranges.iter().enumerate() {
            let (w, bit) = (i / 64, 1u64 << (i % 64));
            for &(a, b) in rs {
                // Every range starts on a point and ends just before one (or at u32::MAX).
                let k0 = pts.partition_point(|&p| p < a);
                let k1 = pts.partition_point(|&p| p <= b);
                for k in k0..k1 {
                    bits[k * words + w] |= bit;
                }
            }
        }
        // Merge adjacent intervals with the same row.
        let mut bounds = Vec::with_capacity(pts.len());
        let mut rows: Vec<u64> = Vec::with_capacity(bits.len());
        for (k, p) in pts.iter().enumerate() {
            let row = &bits[k * words..(k + 1) * words];
            if rows.len() < words || &rows[rows.len() - words..] != row {
                bounds.push(*p);
                rows.extend_from_slice(row);
            }
        }
        Some(Field {
            bounds: bounds.into_boxed_slice(),
            bits: rows.into_boxed_slice(),
        })
    }

    /// The row of the interval holding `key`.
    #[inline]
    fn row(&self, key: u32, words: usize) -> &[u64] {
        // `bounds[0] == 0`, so at least one bound is <= key.
        let k = self.bounds.partition_point(|&b| b <= key).saturating_sub(1);
        self.bits.get(k * words..(k + 1) * words).unwrap_or(&[])
    }

    fn words(&self) -> usize {
        self.bits.len()
    }
}

/// The bit-vector index of one class.
#[derive(Debug, Default)]
pub(super) struct BitIndex {
    /// The class's entries in rule order; bit i is `entries[i]`.
    pub(super) entries: Box<[Entry]>,
    words: usize,
    dport: Field,
    dst: Field,
    src: Field,
}

impl BitIndex {
    /// The index of `entries` (one class, in rule order), or `None` past [`MAX_WORDS`].
    pub(super) fn build(entries: Vec<Entry>, sets: &[Box<[(u32, u32)]>]) -> Option<BitIndex> {
        let words = entries.len().div_ceil(64).max(1);
        let mut left = MAX_WORDS;
        let mut field = |key| {
            let f = Field::build(&entries, key, sets, words, left)?;
            left = left.saturating_sub(f.words());
            Some(f)
        };
        let (dport, dst, src) = (field(Key::Dport)?, field(Key::Dst)?, field(Key::Src)?);
        Some(BitIndex {
            entries: entries.into_boxed_slice(),
            words,
            dport,
            dst,
            src,
        })
    }

    /// The entries that can match on destination port, destination and source, lowest first:
    /// `confirm` decides on the rest of each; the first it accepts is the answer.
    #[inline]
    pub(super) fn first(
        &self,
        dport: u16,
        dst: u32,
        src: u32,
        confirm: impl Fn(&Entry) -> bool,
    ) -> Option<u32> {
        let w = self.words;
        let (a, b, c) = (
            self.dport.row(u32::from(dport), w),
            self.dst.row(dst, w),
            self.src.row(src, w),
        );
        for (i, ((x, y), z)) in a.iter().zip(b).zip(c).enumerate() {
            let mut m = x & y & z;
            while m != 0 {
                let bit = m.trailing_zeros() as usize;
                if let Some(e) = self.entries.get(i * 64 + bit) {
                    if confirm(e) {
                        return Some(e.index);
                    }
                }
                m &= m - 1;
            }
        }
        None
    }
}
