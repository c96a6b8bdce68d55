//! Bounded samples that do not depend on the order values arrive in.
//!
//! A finding shows a few audit IDs, user agents and requests, not ten thousand. Keeping the `K`
//! smallest values (by a key that starts with event time where it matters) gives the same sample
//! whatever order the evidence is read in, which golden files and shuffled inputs rely on.

use std::cmp::Ordering;

/// The `CAP` smallest distinct values seen, kept sorted.
///
/// A sorted vector rather than a set: samples hold a handful of values, and there is one per use
/// group (millions when an attacker floods credentials); a set's first node alone takes room for
/// eleven values, the vector grows one value at a time.
///
/// The bound is part of the type, not a field, and the values sit in a boxed slice exactly as
/// long as they are, with no capacity beside it: a million samples need not each say either.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Smallest<T: Ord, const CAP: usize> {
    values: Box<[T]>,
}

impl<T: Ord, const CAP: usize> Default for Smallest<T, CAP> {
    fn default() -> Self {
        Smallest { values: Box::default() }
    }
}

impl<T: Ord, const CAP: usize> Smallest<T, CAP> {
    /// An empty sample keeping at most `CAP` values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a value; it is kept if it is among the `cap` smallest so far.
    pub fn offer(&mut self, value: T) {
        if self.values.len() >= CAP && self.values.last().is_some_and(|largest| value >= *largest) {
            return;
        }
        let Err(at) = self.values.binary_search(&value) else { return };
        self.insert(at, value);
    }

    /// Offers a value known only by reference, building the owned value only if it would be
    /// kept: the hot path of folding a million requests must not allocate for each of them.
    pub fn offer_with<Q>(&mut self, probe: &Q, make: impl FnOnce() -> T)
    where
        Q: Ord + ?Sized,
        T: std::borrow::Borrow<Q>,
    {
        self.offer_by(|kept| probe.cmp(kept.borrow()), make);
    }

    /// Offers a value known only through `compare` (how it orders against a kept value), for
    /// values whose borrowed form is not a reference (a request of `&str`s).
    pub fn offer_by(&mut self, compare: impl Fn(&T) -> Ordering, make: impl FnOnce() -> T) {
        // Once the sample is full most values fall beyond its largest: one comparison.
        if self.values.len() >= CAP && self.values.last().is_some_and(|largest| compare(largest).is_ge()) {
            return;
        }
        // `compare` orders the candidate against a kept value; the search wants the reverse.
        let Err(at) = self.values.binary_search_by(|kept| compare(kept).reverse()) else { return };
        self.insert(at, make());
    }

    fn insert(&mut self, at: usize, value: T) {
        // Grown by one, exactly: most samples never fill, and doubling would leave room unused.
        let mut values = std::mem::take(&mut self.values).into_vec();
        values.reserve_exact(1);
        values.insert(at, value);
        values.truncate(CAP);
        self.values = values.into_boxed_slice();
    }

    /// Whether a value ordered at `key` could still enter the sample (cheap pre-check).
    pub fn admits<K: Ord>(&self, key: impl FnOnce(&T) -> K, candidate: K) -> bool {
        self.values.len() < CAP || self.values.last().is_some_and(|largest| candidate <= key(largest))
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

    /// Whether `CAP` values are kept (known without reading them).
    pub fn is_full(&self) -> bool {
        self.values.len() >= CAP
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
        let mut a = Smallest::<_, 3>::new();
        let mut b = Smallest::<_, 3>::new();
        for v in [5, 1, 9, 3, 3, 7] {
            a.offer(v);
        }
        for v in [7, 3, 9, 1, 5] {
            b.offer(v);
        }
        assert_eq!(a, b);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), [1, 3, 5]);
    }

    #[test]
    fn offer_with_builds_only_what_it_keeps() {
        let mut s: Smallest<String, 2> = Smallest::new();
        let mut built = 0;
        for v in ["b", "a", "c", "a", "d"] {
            s.offer_with(v, || {
                built += 1;
                v.to_string()
            });
        }
        assert_eq!(s.iter().cloned().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(built, 2, "c and d are larger than a full sample's largest; a is already in");
    }

    #[test]
    fn offer_by_keeps_what_offer_keeps_and_builds_only_what_it_keeps() {
        let values = [40, 7, 19, 7, 3, 40, 25, 1, 19, 12];
        let mut by_value = Smallest::<_, 4>::new();
        let mut by_compare = Smallest::<_, 4>::new();
        let mut built = 0;
        for v in values {
            by_value.offer(v);
            by_compare.offer_by(
                |kept: &i32| v.cmp(kept),
                || {
                    built += 1;
                    v
                },
            );
            assert_eq!(by_compare, by_value, "after offering {v}");
        }
        assert_eq!(built, 7, "duplicates and values beyond a full sample are not built");
    }
}
