//! Leader election on a `coordination.k8s.io/v1` Lease, so that one aggregator replica of a
//! cluster watches its inventory (kube-rs has no elector).
//!
//! The protocol is client-go's `leaderelection` with a Lease lock: the holder renews
//! `spec.renewTime` every third of `spec.leaseDurationSeconds`; another candidate takes the
//! Lease over only once `renewTime + leaseDurationSeconds` has passed. Every write is a
//! `replace` carrying the `resourceVersion` that was read, so two candidates racing for an
//! expired Lease cannot both win: the apiserver refuses the second write with 409 Conflict.
//! A holder that could not renew stops watching before its Lease can have expired
//! ([`Term::valid`]), so two replicas never watch at once unless clocks differ by more than the
//! margin (the times compared are each replica's own clock against the renew time it wrote or
//! read; the same assumption client-go makes).
//!
//! [`next`] decides (pure); [`Elector`] reads and writes the Lease (driver).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokentrail_proto::Timestamp;

/// What the Lease says, as far as the decision goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    /// `spec.holderIdentity`; empty or absent: released.
    pub identity: Option<String>,
    /// `spec.renewTime` (else `acquireTime`).
    pub renewed: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`.
    pub duration: Option<Duration>,
}

/// What to do about the Lease now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is none: create it, held by us.
    Create,
    /// It is ours: renew it.
    Renew,
    /// It is released or expired: write ourselves in.
    TakeOver,
    /// Another holds it until `until` (then look again).
    Wait {
        /// When its term ends, by our clock.
        until: Timestamp,
    },
}

/// The decision for candidate `me` at `now`, given the Lease read (`None`: not found).
/// `ours` is the duration we write, used when the Lease names none.
pub fn next(lease: Option<&Holder>, me: &str, now: Timestamp, ours: Duration) -> Step {
    let Some(lease) = lease else { return Step::Create };
    match lease.identity.as_deref().filter(|h| !h.is_empty()) {
        None => Step::TakeOver,
        Some(h) if h == me => Step::Renew,
        Some(_) => {
            let Some(renewed) = lease.renewed else { return Step::TakeOver };
            let until = renewed.plus(micros(lease.duration.unwrap_or(ours)));
            if now >= until {
                Step::TakeOver
            } else {
                Step::Wait { until }
            }
        }
    }
}

/// Our term as holder: from the last renewal that the apiserver accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    /// When we last wrote `renewTime` successfully (our clock).
    pub renewed: Timestamp,
    /// The Lease's duration.
    pub duration: Duration,
}

impl Term {
    /// Whether we may still act as the holder at `now`: until a third of the duration before
    /// the term ends, so the watchers are stopped before anyone can take over.
    pub fn valid(&self, now: Timestamp) -> bool {
        let margin = self.duration / 3;
        now < self.renewed.plus(micros(self.duration.saturating_sub(margin)))
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Why the Lease could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another candidate wrote it between our read and our write: not an error of ours.
    #[error("lease {namespace}/{name} was written by another candidate first")]
    Lost {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
    },
    /// The API refused or failed.
    #[error(
        "lease {namespace}/{name}: {source} (the aggregator's account needs get, create and update on \
         leases in that namespace)"
    )]
    Api {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// kube-rs's error.
        #[source]
        source: kube::Error,
    },
}

/// Reads and writes one Lease for one candidate (driver).
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    /// The candidate `identity` for Lease `namespace/name`, holding it `duration` per renewal.
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: String, duration: Duration) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity,
            duration,
        }
    }

    /// Who we are in `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round: read, decide, write. `Ok(Some(term))` while we hold the Lease, `Ok(None)`
    /// while another does (with when to look again).
    pub async fn round(&self, now: Timestamp) -> Result<Result<Term, Timestamp>, LeaseError> {
        let current = self.api.get_opt(&self.name).await.map_err(|e| self.api_error(e))?;
        let holder = current.as_ref().map(holder_of);
        let step = next(holder.as_ref(), &self.identity, now, self.duration);
        let write = |lease: Option<Lease>, acquired: bool| self.written(lease, acquired, now);
        match step {
            Step::Wait { until } => return Ok(Err(until)),
            Step::Create => {
                let lease = write(None, true);
                self.api.create(&PostParams::default(), &lease).await.map_err(|e| self.write_error(e))?;
            }
            Step::Renew | Step::TakeOver => {
                let lease = write(current, step == Step::TakeOver);
                // Carries the resourceVersion read: a write in between makes this a 409.
                self.api.replace(&self.name, &PostParams::default(), &lease).await.map_err(|e| self.write_error(e))?;
            }
        }
        Ok(Ok(Term { renewed: now, duration: self.duration }))
    }

    /// Gives the Lease up on shutdown (holder cleared, if still ours), so that another replica
    /// takes over at once rather than after the duration. Best effort.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, lease = %self.name, "could not release the inventory lease");
        }
    }

    fn written(&self, current: Option<Lease>, acquired: bool, now: Timestamp) -> Lease {
        let mut lease = current.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let time = micro_time(now);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if acquired {
            let transitions = spec.lease_transitions.unwrap_or(0);
            spec.lease_transitions = Some(if spec.holder_identity.is_some() { transitions + 1 } else { transitions });
            spec.acquire_time = time.clone();
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX));
        spec.renew_time = time;
        lease
    }

    fn api_error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api { namespace: self.namespace.clone(), name: self.name.clone(), source }
    }

    fn write_error(&self, source: kube::Error) -> LeaseError {
        match &source {
            kube::Error::Api(status) if status.code == 409 => {
                LeaseError::Lost { namespace: self.namespace.clone(), name: self.name.clone() }
            }
            _ => self.api_error(source),
        }
    }
}

fn holder_of(lease: &Lease) -> Holder {
    let spec = lease.spec.as_ref();
    let time = |t: Option<&MicroTime>| t.map(|t| Timestamp(t.0.as_microsecond()));
    Holder {
        identity: spec.and_then(|s| s.holder_identity.clone()),
        renewed: spec.and_then(|s| time(s.renew_time.as_ref()).or_else(|| time(s.acquire_time.as_ref()))),
        duration: spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
    }
}

fn micro_time(t: Timestamp) -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::from_microsecond(t.0).ok().map(MicroTime)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + secs)
    }

    fn held(by: &str, renewed: i64) -> Holder {
        Holder { identity: Some(by.into()), renewed: Some(at(renewed)), duration: Some(D) }
    }

    #[test]
    fn no_lease_is_created_ours_is_renewed() {
        assert_eq!(next(None, "a", at(0), D), Step::Create);
        assert_eq!(next(Some(&held("a", 0)), "a", at(100), D), Step::Renew);
    }

    #[test]
    fn anothers_lease_is_waited_for_until_it_expires() {
        let lease = held("b", 0);
        assert_eq!(next(Some(&lease), "a", at(14), D), Step::Wait { until: at(15) });
        assert_eq!(next(Some(&lease), "a", at(15), D), Step::TakeOver);
        // Its own duration counts, not ours.
        let long = Holder { duration: Some(Duration::from_secs(60)), ..lease };
        assert_eq!(next(Some(&long), "a", at(30), D), Step::Wait { until: at(60) });
    }

    #[test]
    fn a_released_or_timeless_lease_is_taken_over() {
        assert_eq!(next(Some(&Holder::default()), "a", at(0), D), Step::TakeOver);
        let empty = Holder { identity: Some(String::new()), ..held("b", 0) };
        assert_eq!(next(Some(&empty), "a", at(0), D), Step::TakeOver);
        let timeless = Holder { renewed: None, ..held("b", 0) };
        assert_eq!(next(Some(&timeless), "a", at(0), D), Step::TakeOver);
    }

    #[test]
    fn a_holder_stops_a_third_of_the_duration_before_its_term_ends() {
        let term = Term { renewed: at(0), duration: D };
        assert!(term.valid(at(9)));
        assert!(!term.valid(at(10)), "10 s after renewing a 15 s lease, another may take over in 5 s");
    }

    #[test]
    fn lease_times_round_trip_through_micro_time() {
        let t = Timestamp(1_700_000_000_123_456);
        let lease = Lease {
            spec: Some(LeaseSpec {
                renew_time: micro_time(t),
                holder_identity: Some("a".into()),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        assert_eq!(holder_of(&lease).renewed, Some(t));
    }
}
