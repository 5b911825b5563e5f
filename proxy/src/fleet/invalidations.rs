//! Invalidations across the fleet, in CloudFront's model: each has an id and a status, `InProgress`
//! until every live node has applied it, then `Completed` with the time it took. Published to the stream
//! `VERGE_INVALIDATIONS` (subject `verge.invalidations.<distribution>`); every node reads it through a
//! durable consumer of its own with explicit acks, so a node that was away gets what it missed when it
//! comes back. A node records its ack under `ack.<id>.<node>` in `verge_invalidations` (where the record
//! itself is `inv.<id>`) before acking the message: the record and the acks say the status.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{now_ms, Buckets, INVALIDATION_STREAM};
use crate::cache::invalidation::InvalidationPath;
use crate::cache::storage::ObjectStore;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub distribution: String,
    pub paths: Vec<String>,
    pub created_ms: u64,
    /// Set once every live node acked: the last ack's time.
    pub completed_ms: Option<u64>,
}

impl Record {
    pub fn status(&self) -> &'static str {
        if self.completed_ms.is_some() {
            "Completed"
        } else {
            "InProgress"
        }
    }
}

fn subject(distribution: &str) -> String {
    format!("verge.invalidations.{distribution}")
}

async fn stream(js: &jetstream::Context) -> Result<jetstream::stream::Stream, String> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: INVALIDATION_STREAM.to_string(),
        subjects: vec!["verge.invalidations.>".to_string()],
        max_age: Duration::from_secs(30 * 86_400),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {INVALIDATION_STREAM}: {e}"))
}

/// A CloudFront-style id: `I` and 13 characters from the time and the process's random hash keys.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    let mut bits = u128::from(now_ms()) << 64 | u128::from(hasher.finish());
    let mut out = String::from("I");
    for _ in 0..13 {
        out.push(ALPHABET[(bits % 32) as usize] as char);
        bits /= 32;
    }
    out
}

/// Publishes an invalidation of `paths` (each checked first: a batch with one bad path is refused whole).
pub async fn publish(buckets: &Buckets, distribution: &str, paths: &[String]) -> Result<Record, String> {
    for path in paths {
        InvalidationPath::parse(path).map_err(|e| format!("`{path}`: {e}"))?;
    }
    if paths.is_empty() {
        return Err("no paths given".to_string());
    }
    stream(&buckets.js).await?;
    let record = Record {
        id: new_id(),
        distribution: distribution.to_string(),
        paths: paths.to_vec(),
        created_ms: now_ms(),
        completed_ms: None,
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    buckets.invalidations.put(format!("inv.{}", record.id), bytes.clone().into()).await.map_err(|e| e.to_string())?;
    let ack = buckets.js.publish(subject(distribution), bytes.into()).await.map_err(|e| e.to_string())?;
    ack.await.map_err(|e| format!("the stream did not take the invalidation: {e}"))?;
    Ok(record)
}

/// Marks `record` Completed when every live node serving its distribution has acked it; returns it as
/// it now stands.
pub async fn refresh(buckets: &Buckets, mut record: Record) -> Result<Record, String> {
    if record.completed_ms.is_some() {
        return Ok(record);
    }
    let nodes = buckets.live_nodes().await?;
    let mut last = record.created_ms;
    for node in nodes.iter().filter(|n| n.distribution == record.distribution) {
        let key = format!("ack.{}.{}", record.id, node.node);
        match buckets.invalidations.get(key).await.map_err(|e| e.to_string())? {
            Some(at) => last = last.max(String::from_utf8_lossy(&at).parse().unwrap_or(last)),
            None => return Ok(record),
        }
    }
    if nodes.is_empty() {
        return Ok(record);
    }
    record.completed_ms = Some(last);
    let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    buckets.invalidations.put(format!("inv.{}", record.id), bytes.into()).await.map_err(|e| e.to_string())?;
    Ok(record)
}

/// Every invalidation record, newest first, each with its status brought up to date.
pub async fn list(buckets: &Buckets) -> Result<Vec<Record>, String> {
    let mut keys = buckets.invalidations.keys().await.map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if !key.starts_with("inv.") {
            continue;
        }
        if let Ok(Some(value)) = buckets.invalidations.get(&key).await {
            if let Ok(record) = serde_json::from_slice::<Record>(&value) {
                records.push(refresh(buckets, record).await?);
            }
        }
    }
    records.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    Ok(records)
}

/// A node's side: applies each invalidation to its cache, records the ack, acks the message; runs until
/// the connection fails (the agent starts it again with the next session).
pub async fn consume(buckets: &Buckets, node: &str, distribution: &str, cache: &ObjectStore) -> Result<(), String> {
    let stream = stream(&buckets.js).await?;
    let name = format!("node-{node}");
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: subject(distribution),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(10),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {name}: {e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| format!("consumer {name}: {e}"))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| format!("consumer {name}: {e}"))?;
        match serde_json::from_slice::<Record>(&message.payload) {
            Ok(record) => {
                let applied = crate::server::admin::invalidate(cache, &record.paths.join("\n"));
                match &applied {
                    Ok((paths, removed)) => {
                        tracing::info!(target: "verge::fleet", id = %record.id, paths, removed, "invalidation applied")
                    }
                    Err(e) => tracing::warn!(target: "verge::fleet", id = %record.id, "invalidation skipped: {e}"),
                }
                let key = format!("ack.{}.{node}", record.id);
                buckets.invalidations.put(key, now_ms().to_string().into()).await.map_err(|e| e.to_string())?;
            }
            Err(e) => tracing::warn!(target: "verge::fleet", "not an invalidation record, skipped: {e}"),
        }
        message.ack().await.map_err(|e| format!("ack: {e}"))?;
    }
    Err(format!("consumer {name}: the message stream ended"))
}
