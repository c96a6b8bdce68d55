//! Bounded samples that do not depend on the order values arrive in.
//!
//! A finding shows a few audit IDs, user agents and requests, not ten thousand. Keeping the `K`
//! smallest values (by a key that starts with event time where it matters) gives the same sample
//! whatever order the evidence is read in, which golden files and shuffled inputs rely on.

use std::collections::BTreeSet;

/// The `cap` smallest distinct values seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smallest<T: Ord> {
    values: BTreeSet<T>,
    cap: usize,
}

impl<T: Ord> Smallest<T> {
    /// An empty sample keeping at most `cap` values.
    pub fn new(cap: usize) -> Self {
        Smallest { values: BTreeSet::new(), cap }
    }

    /// Offers a value; it is kept if it is among the `cap` smallest so far.
    pub fn offer(&mut self, value: T) {
        if self.values.len() >= self.cap {
            match self.values.last() {
                Some(largest) if value < *largest => {}
                _ => return,
            }
        }
        self.values.insert(value);
        if self.values.len() > self.cap {
            self.values.pop_last();
        }
    }

    /// Offers every value of another sample.
    pub fn merge(&mut self, other: &Self)
    where
        T: Clone,
    {
        for v in &other.values {
            self.offer(v.clone());
        }
    }

    /// The kept values, smallest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.values.iter()
    }

    /// Whether nothing was kept.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_smallest_whatever_the_order() {
        let mut a = Smallest::new(3);
        let mut b = Smallest::new(3);
        for v in [5, 1, 9, 3, 3, 7] {
            a.offer(v);
        }
        for v in [7, 3, 9, 1, 5] {
            b.offer(v);
        }
        assert_eq!(a, b);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), [1, 3, 5]);
    }
}
