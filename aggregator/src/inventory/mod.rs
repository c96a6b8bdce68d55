//! The cluster inventory feed (driver): kube-rs watchers of Pods, Nodes, ServiceAccounts and
//! token Secrets, whose objects become the inventory observations `tokentrail analyze` reads
//! from `kubectl get -o json` dumps, delivered through the aggregator's [`Sink`] with the
//! configured cluster.
//!
//! Without it the stream only learns of objects from the audit log (created while it ran) and
//! from the agents (pods on their nodes): ServiceAccounts, legacy token Secrets and pods started
//! before the pipeline stay unknown, and the legacy-token rules stay silent.
//!
//! * Each watcher lists, then watches from the list's resourceVersion, resumes after a broken
//!   watch, and lists again when the resourceVersion is too old (410 Gone); errors are retried
//!   with kube-rs's default back-off (up to about 10 s apart) and logged.
//! * Token Secrets are watched as metadata only, with the field selector
//!   `type=kubernetes.io/service-account-token`: the token is never received
//!   ([`convert::secret_metadata`]).
//! * What each event sends is decided by [`convert::Tracker`] (pure): unchanged objects are not
//!   sent again, a pod's deletion is sent, a re-list sends the deletions it reveals.
//! * With `inventory.lease`, only the replica holding the Lease watches ([`lease`]); losing it
//!   stops the watchers at once, and the next holder lists everything again. Without it, every
//!   replica watches: duplicates are harmless to the engine (facts fold by min/max and set
//!   union), only wasteful.
//! * A delivery that fails (Kafka down beyond the producer's timeout) restarts the watchers
//!   after a pause: the re-list sends everything again, so nothing is lost.

pub mod convert;
pub mod lease;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde_json::Value;
use tokentrail_proto::{Observation, Timestamp};
use tokio::sync::watch;
use tokio_stream::StreamMap;

use crate::config::InventoryConfig;
use crate::error::{AggregatorError, ConfigError};
use crate::sink::Sink;
use convert::{Kind, Tracker};
use lease::Elector;

/// How long the feed waits before watching again after a delivery failed.
const DELIVERY_PAUSE: Duration = Duration::from_secs(5);

/// The feed of one cluster, connected.
pub struct Feed {
    client: Client,
    config: InventoryConfig,
}

impl Feed {
    /// Reads the kubeconfig (or the in-cluster account): a configuration that cannot work
    /// stops the aggregator at start, not later.
    pub async fn connect(config: &InventoryConfig) -> Result<Feed, AggregatorError> {
        let client = crate::kube_client::client(config.kubeconfig.as_deref())
            .await
            .map_err(|e| ConfigError(vec![format!("inventory: {e}")]))?;
        Ok(Feed { client, config: config.clone() })
    }

    /// Runs until `stop` turns true: watching, or (with a Lease) competing for it and watching
    /// while holding it.
    pub async fn run(self, sink: Arc<dyn Sink>, mut stop: watch::Receiver<bool>) -> Result<(), AggregatorError> {
        let kinds = self.config.kinds.clone();
        let cluster = self.config.cluster.clone();
        let start = || tokio::spawn(watch_all(self.client.clone(), kinds.clone(), cluster.clone(), sink.clone()));
        let Some(lease) = &self.config.lease else {
            tracing::info!(cluster = %cluster, kinds = ?kinds, "inventory feed watching (no lease: every replica watches)");
            let task = start();
            let _ = stop.wait_for(|s| *s).await;
            task.abort();
            return Ok(());
        };
        let identity = lease.identity.clone().unwrap_or_else(default_identity);
        let elector = Elector::new(self.client.clone(), &lease.namespace, &lease.name, identity, lease.duration);
        let retry = lease.duration / 3;
        let mut watching: Option<tokio::task::JoinHandle<()>> = None;
        let mut term: Option<lease::Term> = None;
        loop {
            let now = now();
            let wait = match elector.round(now).await {
                Ok(Ok(t)) => {
                    term = Some(t);
                    if watching.is_none() {
                        tracing::info!(cluster = %cluster, lease = %lease.name, identity = %elector.identity(),
                                       "inventory lease acquired: watching");
                        watching = Some(start());
                    }
                    retry
                }
                Ok(Err(until)) => {
                    term = None;
                    let left = Duration::from_micros(u64::try_from(until.0 - now.0).unwrap_or(0));
                    left.clamp(Duration::from_millis(200), retry)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inventory lease round failed; retrying");
                    retry
                }
            };
            // Not renewed in time, or held by another: stop before anyone else may start.
            if watching.is_some() && !term.is_some_and(|t| t.valid(self::now())) {
                tracing::warn!(lease = %lease.name, "inventory lease lost: watchers stopped");
                if let Some(task) = watching.take() {
                    task.abort();
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(task) = watching.take() {
            task.abort();
            elector.release().await;
        }
        Ok(())
    }
}

/// `$POD_NAME`, else the host name, with the process id: two replicas on one host (tests) are
/// two candidates.
fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| String::from("aggregator"));
    format!("{host}-{}", std::process::id())
}

#[allow(clippy::disallowed_methods)] // a driver: the cores take time as an argument
fn now() -> Timestamp {
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    Timestamp(i64::try_from(micros).unwrap_or(i64::MAX))
}

/// One object of a watch event: its metadata (for the tracker) and its JSON as a dump holds it.
struct Seen {
    meta: ObjectMeta,
    json: Result<Value, serde_json::Error>,
}

type Events = Pin<Box<dyn Stream<Item = Result<Event<Seen>, watcher::Error>> + Send>>;

fn events<K>(api: Api<K>, config: watcher::Config, kind: Kind) -> Events
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug + Send + 'static,
{
    let seen = move |o: K| Seen { json: convert::object_json(kind, &o), meta: o.meta().clone() };
    Box::pin(watcher::watcher(api, config).default_backoff().map(move |r| r.map(|e| lift(e, seen))))
}

fn lift<K>(event: Event<K>, f: impl Fn(K) -> Seen) -> Event<Seen> {
    match event {
        Event::Apply(o) => Event::Apply(f(o)),
        Event::Delete(o) => Event::Delete(f(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(f(o)),
        Event::InitDone => Event::InitDone,
    }
}

fn streams(client: &Client, kinds: &[Kind]) -> StreamMap<Kind, Events> {
    let mut map = StreamMap::new();
    for &kind in Kind::ALL.iter().filter(|k| kinds.contains(k)) {
        let config = watcher::Config::default();
        let stream = match kind {
            Kind::Pods => events(Api::<Pod>::all(client.clone()), config, kind),
            Kind::Nodes => events(Api::<Node>::all(client.clone()), config, kind),
            Kind::Serviceaccounts => events(Api::<ServiceAccount>::all(client.clone()), config, kind),
            Kind::Secrets => {
                // Metadata only: the token is never sent to us.
                let config = config.fields(&format!("type={}", convert::SERVICE_ACCOUNT_TOKEN_TYPE));
                let stream = watcher::watcher(Api::<PartialObjectMeta<Secret>>::all(client.clone()), config)
                    .default_backoff()
                    .map(|r| {
                        r.map(|e| lift(e, |o| Seen { json: convert::secret_metadata(&o.metadata), meta: o.metadata }))
                    });
                Box::pin(stream) as Events
            }
        };
        map.insert(kind, stream);
    }
    map
}

/// Watches until aborted; a failed delivery restarts the watchers (and their lists).
async fn watch_all(client: Client, kinds: Vec<Kind>, cluster: String, sink: Arc<dyn Sink>) {
    loop {
        match watch_once(&client, &kinds, &cluster, sink.as_ref()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, pause = ?DELIVERY_PAUSE, "inventory delivery failed: listing again after a pause");
                tokio::time::sleep(DELIVERY_PAUSE).await;
            }
        }
    }
}

async fn watch_once(client: &Client, kinds: &[Kind], cluster: &str, sink: &dyn Sink) -> Result<(), AggregatorError> {
    let mut streams = streams(client, kinds);
    let mut tracker = Tracker::new();
    while let Some((kind, event)) = streams.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // Names the resource and the API's answer (403: see docs/deploy.md for RBAC).
                tracing::warn!(resource = kind.resource(), error = %e, "inventory watch failed; retrying with back-off");
                continue;
            }
        };
        let out = match event {
            Event::Init => {
                tracker.relist_started(kind);
                Vec::new()
            }
            Event::InitApply(o) | Event::Apply(o) => {
                let observations = observations(kind, &o);
                tracker.apply(kind, &o.meta, observations)
            }
            Event::Delete(o) => {
                let observations = observations(kind, &o);
                tracker.delete(kind, &o.meta, observations, now())
            }
            Event::InitDone => {
                let gone = tracker.relist_done(kind, now());
                tracing::info!(
                    resource = kind.resource(),
                    objects = tracker.len(),
                    gone = gone.len(),
                    "inventory listed"
                );
                gone
            }
        };
        if !out.is_empty() {
            sink.deliver(cluster, out, None).await?;
        }
    }
    Ok(())
}

fn observations(kind: Kind, seen: &Seen) -> Vec<Observation> {
    let json = match &seen.json {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(resource = kind.resource(), name = ?seen.meta.name, error = %e, "inventory object not converted");
            return Vec::new();
        }
    };
    let decoded = convert::decode(json);
    for p in &decoded.problems {
        tracing::warn!(resource = kind.resource(), problem = %p, "inventory object");
    }
    decoded.observations
}
