//! Values that many use groups hold alike, kept once: the requests and user agents of samples,
//! the nodes of bound pods.
//!
//! A flood of credentials used once each is a million use groups whose samples hold the same few
//! requests (`list configmaps in shop`) and user agents. Each sample holds a pointer to one shared
//! copy. Order and equality are the values' own, so a sample keeps exactly what it kept when it
//! held copies, and a value never shared (a sample folded elsewhere) is as good as a shared one.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::observation::Request;

/// The shared copies (an engine's; not persisted: a restored engine shares anew).
#[derive(Debug, Default)]
pub struct Shared {
    requests: HashTable<Arc<Request>>,
    texts: HashTable<Arc<str>>,
    hasher: foldhash::fast::RandomState,
}

impl Shared {
    /// The shared copy of a request.
    pub fn request(&mut self, r: &Request<&str>) -> Arc<Request> {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(r);
        self.requests
            .entry(hash, |kept| kept.view() == *r, |kept| hasher.hash_one(kept.view()))
            .or_insert_with(|| Arc::new(r.into_owned()))
            .get()
            .clone()
    }

    /// The shared copy of a text many groups hold: a user agent, a node name.
    pub fn text(&mut self, text: &str) -> Arc<str> {
        let hasher = &self.hasher;
        self.texts
            .entry(hasher.hash_one(text), |kept| **kept == *text, |kept| hasher.hash_one(&**kept))
            .or_insert_with(|| Arc::from(text))
            .get()
            .clone()
    }

    /// Forgets the copies no sample holds any more (after expiry dropped their groups).
    pub fn prune(&mut self) {
        self.requests.retain(|r| Arc::strong_count(r) > 1);
        self.texts.retain(|text| Arc::strong_count(text) > 1);
    }

    /// How many distinct values are kept.
    pub fn len(&self) -> usize {
        self.requests.len() + self.texts.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(namespace: &str) -> Request<&str> {
        Request { verb: "list", resource: Some("configmaps"), namespace: Some(namespace), ..Request::default() }
    }

    #[test]
    fn equal_values_share_one_copy_until_no_one_holds_it() {
        let mut shared = Shared::default();
        let a = shared.request(&list("shop"));
        let b = shared.request(&list("shop"));
        let c = shared.request(&list("billing"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        let ua = shared.text("kubectl/v1.31.0 (linux/amd64) kubernetes/abc");
        assert!(Arc::ptr_eq(&ua, &shared.text("kubectl/v1.31.0 (linux/amd64) kubernetes/abc")));
        assert_eq!(shared.len(), 3);
        drop((a, b, ua));
        shared.prune();
        assert_eq!(shared.len(), 1, "only the billing request is still held");
        assert_eq!(*shared.request(&list("billing")), list("billing").into_owned());
    }
}
