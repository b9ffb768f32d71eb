//! Id → position lookup: a direct table when ids are dense enough, a hash map
//! otherwise. The first occurrence of a repeated id wins.

use std::collections::HashMap;

pub(crate) enum IdIndex {
    Table { min: i64, table: Vec<u32> },
    Map(HashMap<i64, u32>),
}

const NONE: u32 = u32::MAX;

impl IdIndex {
    pub(crate) fn new(ids: &[i64]) -> Self {
        if ids.is_empty() {
            return IdIndex::Table {
                min: 0,
                table: Vec::new(),
            };
        }
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for &id in ids {
            lo = lo.min(id);
            hi = hi.max(id);
        }
        let span = (hi as i128) - (lo as i128) + 1;
        if span <= 16 * ids.len() as i128 + (1 << 20) {
            let mut table = vec![NONE; span as usize];
            for (pos, &id) in ids.iter().enumerate() {
                let slot = &mut table[(id - lo) as usize];
                if *slot == NONE {
                    *slot = pos as u32;
                }
            }
            IdIndex::Table { min: lo, table }
        } else {
            let mut map = HashMap::with_capacity(ids.len());
            for (pos, &id) in ids.iter().enumerate() {
                map.entry(id).or_insert(pos as u32);
            }
            IdIndex::Map(map)
        }
    }

    #[inline]
    pub(crate) fn get(&self, id: i64) -> Option<u32> {
        match self {
            IdIndex::Table { min, table } => {
                let off = id.checked_sub(*min)?;
                if off < 0 {
                    return None;
                }
                match table.get(off as usize) {
                    Some(&p) if p != NONE => Some(p),
                    _ => None,
                }
            }
            IdIndex::Map(map) => map.get(&id).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_positions() {
        let ids = [5, 3, 9, 3];
        let idx = IdIndex::new(&ids);
        assert_eq!(idx.get(5), Some(0));
        assert_eq!(idx.get(3), Some(1));
        assert_eq!(idx.get(9), Some(2));
        assert_eq!(idx.get(4), None);
        assert_eq!(idx.get(i64::MIN), None);
        let sparse = IdIndex::new(&[i64::MIN, i64::MAX, 0]);
        assert_eq!(sparse.get(i64::MAX), Some(1));
        assert_eq!(sparse.get(1), None);
    }
}
