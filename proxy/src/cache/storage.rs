//! The bounded in-memory object store behind pingora-cache: moka weighted by bytes, zero-copy hits.
//!
//! pingora's `MemCache` is unbounded and, by its own documentation, for testing only. This store is bounded by
//! `cache.memory_mb` (TinyLFU admission + LRU eviction by moka), publishes an object only when its
//! miss handler finishes (a cancelled transfer never becomes a servable object), and never panics.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;

use crate::cache::invalidation::{InvalidationPath, PathIndex};
use crate::cache::rendered_head::{self, PartialHead, RenderedHead};

/// `remove` only when the stored object's path passes `check` (wildcards are matched against full paths).
trait RemoveIf {
    fn remove_if_path(&self, key: &u128, check: impl Fn(&str) -> bool) -> bool;
}

impl RemoveIf for moka::sync::Cache<u128, Arc<Entry>> {
    fn remove_if_path(&self, key: &u128, check: impl Fn(&str) -> bool) -> bool {
        match self.get(key) {
            Some(entry) if check(&entry.path) => self.remove(key).is_some(),
            _ => false,
        }
    }
}

/// A `CacheMeta` kept as plain fields. pingora's own serialisation zstd-compresses the header, and
/// decompressing it on every hit cost ~10% of hit throughput; rebuilding from these fields costs a
/// header clone. (Provenance is rebuilt as `created`: a Vary variant admitted between an object's first
/// admission and its refresh may then miss once; content is never wrong.)
#[derive(Clone)]
struct StoredMeta {
    fresh_until: SystemTime,
    created: SystemTime,
    updated: SystemTime,
    epoch_override: Option<SystemTime>,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    variance: Option<HashBinary>,
    header: ResponseHeader,
}

/// Room for the fields every hit adds to its copy of the stored header (`Age`, `Accept-Ranges`,
/// `Connection`, the edge headers, a response headers policy's): a copy keeps the map's index size,
/// so with this room a hit never rehashes the map as it grows.
const ROOM_PER_HIT: usize = 12;

/// The header without pingora's original-case name map: every hit clones the stored header (twice, with
/// pingora's own copy), and the case map doubles that work. Names then go out in lower case, which HTTP
/// treats the same.
fn without_case_map(header: &ResponseHeader) -> ResponseHeader {
    header.clone_without_case(ROOM_PER_HIT)
}

impl StoredMeta {
    fn from_meta(meta: &CacheMeta) -> Self {
        Self {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            updated: meta.updated(),
            epoch_override: meta.epoch_override(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            variance: meta.variance(),
            header: without_case_map(meta.response_header()),
        }
    }

    fn to_meta(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.header.clone(),
        );
        // `updated` has no setter; the epoch override is what age and freshness are computed from.
        match self.epoch_override {
            Some(epoch) => meta.set_epoch_override(epoch),
            None if self.updated != self.created => meta.set_epoch_override(self.updated),
            None => {}
        }
        if let Some(v) = self.variance {
            meta.set_variance(v);
        }
        meta
    }

    fn approximate_size(&self) -> usize {
        self.header.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum::<usize>() + 128
    }
}

/// One stored response: its meta, the whole body, and the path used by invalidations.
struct Entry {
    meta: StoredMeta,
    /// The head a fresh hit sends, rendered once here (`None`: hits take pingora's path).
    head: Option<RenderedHead>,
    /// Unique per stored object; see `PathIndex`.
    generation: u64,
    body: Bytes,
    /// The invalidation path (`/a/b.jpg` or `/a/b.jpg?q=1`), taken from the primary key.
    path: Box<str>,
    /// The id of the last viewer-response header block found to add only fields `head` lacks (0: none):
    /// each hit after the first with the same block appends its lines without looking its names up.
    appendable_block: AtomicU64,
}

/// What one stored object costs beyond its header and body bytes: the moka entry, the `Arc`, the header
/// map's allocations (a buffer per name and value), the path index entry and the allocator's rounding.
/// Measured, not guessed: a 16 MiB cache of 520-byte objects (13,748 of them at ~1.2 KB each by the
/// counted bytes alone) grew RSS by 104 MB, about 7.6 KB per object; counting 6 KiB per entry on top of
/// the bytes keeps the process within `server.cache.memory_mb` for small objects too (docs/caching.md).
const ENTRY_OVERHEAD: usize = 6 << 10;

impl Entry {
    fn weight(&self) -> u32 {
        let head = self.head.as_ref().map_or(0, |h| h.bytes().len());
        let bytes = self.meta.approximate_size() + head + self.body.len() + self.path.len() + ENTRY_OVERHEAD;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// Counters exposed by `stats()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStats {
    pub objects: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub evicted_objects: u64,
    pub rejected_too_large: u64,
}

pub struct ObjectStore {
    objects: moka::sync::Cache<u128, Arc<Entry>>,
    index: Arc<PathIndex>,
    generations: AtomicU64,
    capacity_bytes: u64,
    max_object_bytes: usize,
    evicted: Arc<AtomicU64>,
    rejected_too_large: AtomicU64,
}

fn storage_key(key: &CacheKey) -> u128 {
    u128::from_be_bytes(key.combined_bin())
}

fn compact_storage_key(key: &CompactCacheKey) -> u128 {
    u128::from_be_bytes(key.combined_bin())
}

/// The part of a primary key before the first NUL is the object's invalidation path (see `key.rs`).
fn invalidation_path(key: &CacheKey) -> Box<str> {
    let primary = key.primary_key_str().unwrap_or("");
    primary.split('\0').next().unwrap_or("").into()
}

impl ObjectStore {
    pub fn new(capacity_bytes: u64, max_object_bytes: u64) -> Self {
        let evicted = Arc::new(AtomicU64::new(0));
        let counter = evicted.clone();
        let index = Arc::new(PathIndex::default());
        let listener_index = index.clone();
        let objects = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_k: &u128, v: &Arc<Entry>| v.weight())
            .eviction_listener(move |key: Arc<u128>, entry: Arc<Entry>, cause| {
                use moka::notification::RemovalCause;
                if cause == RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                // A replaced entry's key now holds a newer object, indexed under its own generation.
                if cause != RemovalCause::Replaced {
                    listener_index.remove(&entry.path, *key, entry.generation);
                }
            })
            .build();
        Self {
            objects,
            index,
            generations: AtomicU64::new(1),
            capacity_bytes,
            max_object_bytes: usize::try_from(max_object_bytes).unwrap_or(usize::MAX),
            evicted,
            rejected_too_large: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> StorageStats {
        self.objects.run_pending_tasks();
        StorageStats {
            objects: self.objects.entry_count(),
            bytes: self.objects.weighted_size(),
            capacity_bytes: self.capacity_bytes,
            evicted_objects: self.evicted.load(Ordering::Relaxed),
            rejected_too_large: self.rejected_too_large.load(Ordering::Relaxed),
        }
    }

    /// Removes every object, all variants, matching a CloudFront invalidation path; returns how many.
    pub fn invalidate(&self, path: &InvalidationPath) -> usize {
        let mut removed = 0;
        for key in self.index.candidates(path) {
            if self.objects.remove_if_path(&key, |p| path.matches(p)) {
                removed += 1;
            }
        }
        removed
    }

    /// Makes a stored object fresh for `duration` more (CloudFront serves a stale object for
    /// `error_caching_min_ttl` after its origin failed, before asking the origin again).
    pub fn extend_freshness(&self, key: &CacheKey, duration: std::time::Duration) {
        let k = storage_key(key);
        if let Some(old) = self.objects.get(&k) {
            let mut meta = old.meta.clone();
            meta.fresh_until = SystemTime::now() + duration;
            let entry = Entry {
                meta,
                head: old.head.clone(),
                generation: old.generation,
                body: old.body.clone(),
                path: old.path.clone(),
                appendable_block: AtomicU64::new(0),
            };
            self.objects.insert(k, Arc::new(entry));
        }
    }

    /// Removes every stored variant of a URL path, whatever its query (RFC 9111 §4.4, after an unsafe
    /// method succeeded on it); returns how many.
    pub fn invalidate_url_path(&self, url_path: &str) -> usize {
        let mut removed = 0;
        for key in self.index.keys_for(url_path) {
            if self.objects.remove(&key).is_some() {
                removed += 1;
            }
        }
        removed
    }
}

/// A fresh stored `200` with a rendered head: what `ObjectStore::fresh_hit` finds for edge/fresh_hit.rs.
pub struct FreshHit {
    head: RenderedHead,
    entry: Arc<Entry>,
}

impl FreshHit {
    pub fn head(&self) -> &RenderedHead {
        &self.head
    }

    pub fn body(&self) -> &Bytes {
        &self.entry.body
    }

    /// The stored header (the logs read the content type and length from it).
    pub fn header(&self) -> &ResponseHeader {
        &self.entry.meta.header
    }

    /// Whether header block `id` was found to add only fields this head lacks (`remember_appendable`).
    pub fn appendable_block(&self, id: u64) -> bool {
        self.entry.appendable_block.load(Ordering::Relaxed) == id
    }

    /// Remembers that header block `id` adds only fields this head lacks (one block per object: a
    /// second block replaces the first, and is checked again when the first comes back).
    pub fn remember_appendable(&self, id: u64) {
        self.entry.appendable_block.store(id, Ordering::Relaxed);
    }

    /// Seconds since the response was made or last revalidated, as pingora's `CacheMeta::age` counts.
    pub fn age_secs(&self, now: SystemTime) -> u64 {
        let meta = &self.entry.meta;
        let epoch = meta.epoch_override.unwrap_or(meta.updated);
        now.duration_since(epoch).map_or(0, |d| d.as_secs())
    }
}

impl ObjectStore {
    /// The object pingora's lookup would serve as a fresh hit without revalidation, if its head was
    /// rendered. As pingora does: the object in the primary slot (`primary`, a key without variance)
    /// unless it varies and `variance_of` (the request's variance against its `Vary`) names another
    /// variant; then the variant's own slot, if that variant was stored after the primary slot's object
    /// (pingora's `valid_after`: an invalidation removes only the primary slot, whose next object then
    /// outdates every older variant).
    pub fn fresh_hit(
        &self,
        primary: &HashBinary,
        now: SystemTime,
        variance_of: impl FnOnce(&ResponseHeader) -> Option<HashBinary>,
    ) -> Option<FreshHit> {
        let mut entry = self.objects.get(&u128::from_be_bytes(*primary))?;
        if let Some(stored) = entry.meta.variance {
            match variance_of(&entry.meta.header) {
                Some(wanted) if wanted != stored => {
                    let variant = self.objects.get(&u128::from_be_bytes(variant_key(primary, wanted)))?;
                    if variant.meta.variance != Some(wanted) || variant.meta.created < entry.meta.created {
                        return None;
                    }
                    entry = variant;
                }
                _ => {}
            }
        }
        if entry.meta.fresh_until < now {
            return None;
        }
        let head = entry.head.clone()?;
        Some(FreshHit { head, entry })
    }
}

/// The slot of a variant: pingora's combined key of the primary hash and the variance.
fn variant_key(primary: &HashBinary, variance: HashBinary) -> HashBinary {
    let mut key = CacheKey::new(String::new(), "");
    key.set_primary_bin_override(*primary);
    key.set_variance_key(variance);
    key.combined_bin()
}

struct Hit {
    body: Bytes,
    /// Current read window `[start, end)` into `body`, moved by `seek`.
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.body.len();
        let end = end.map_or(len, |e| e.min(len));
        if start > end {
            return Error::e_explain(ErrorType::InternalError, format!("seek {start} past end {end}"));
        }
        self.start = start;
        self.end = end;
        self.done = false;
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

struct Miss {
    store: &'static ObjectStore,
    key: u128,
    path: Box<str>,
    meta: StoredMeta,
    head: Option<PartialHead>,
    body: BytesMut,
    too_large: bool,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.body.len() + data.len() > self.store.max_object_bytes {
            // Stop buffering; finish() refuses to publish. The viewer still gets the whole body.
            self.too_large = true;
            self.body = BytesMut::new();
            return Ok(());
        }
        if !self.too_large {
            self.body.extend_from_slice(&data);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        if self.too_large {
            self.store.rejected_too_large.fetch_add(1, Ordering::Relaxed);
            return Error::e_explain(ErrorType::InternalError, "object exceeds cache.max_object_mb");
        }
        let size = self.body.len();
        let mut meta = self.meta;
        // A body that arrived without a length (compressed at the edge, or chunked by the origin) is
        // stored with its length: hits then send Content-Length, and Range works on them.
        if !meta.header.headers.contains_key(http::header::CONTENT_LENGTH) {
            meta.header.remove_header(&http::header::TRANSFER_ENCODING);
            let _ = meta.header.insert_header(http::header::CONTENT_LENGTH, size.to_string());
        }
        let generation = self.store.generations.fetch_add(1, Ordering::Relaxed);
        self.store.index.add(&self.path, self.key, generation);
        let head = self.head.and_then(|h| h.finish(size));
        let entry = Entry {
            meta,
            head,
            generation,
            body: self.body.freeze(),
            path: self.path,
            appendable_block: AtomicU64::new(0),
        };
        self.store.objects.insert(self.key, Arc::new(entry));
        Ok(MissFinishType::Created(size))
    }
}

#[async_trait]
impl Storage for ObjectStore {
    async fn lookup(&'static self, key: &CacheKey, _trace: &SpanHandle) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(entry) = self.objects.get(&storage_key(key)) else {
            return Ok(None);
        };
        let meta = entry.meta.to_meta();
        let hit = Hit { body: entry.body.clone(), start: 0, end: entry.body.len(), done: false };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Miss {
            store: self,
            key: storage_key(key),
            path: invalidation_path(key),
            meta: StoredMeta::from_meta(meta),
            head: rendered_head::render(meta.response_header()),
            body: BytesMut::new(),
            too_large: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let k = compact_storage_key(target.key());
        Ok(match self.objects.remove(&k) {
            Some(_) => PurgeOutcome::Purged(None),
            None => PurgeOutcome::NotFound,
        })
    }

    async fn update_meta(&'static self, key: &CacheKey, meta: &CacheMeta, _trace: &SpanHandle) -> Result<bool> {
        let k = storage_key(key);
        // The object may have been evicted or purged since the lookup: report it, never panic.
        let Some(old) = self.objects.get(&k) else {
            return Ok(false);
        };
        let entry = Entry {
            meta: StoredMeta::from_meta(meta),
            head: rendered_head::render(meta.response_header()).and_then(|h| h.finish(old.body.len())),
            generation: old.generation,
            body: old.body.clone(),
            path: old.path.clone(),
            appendable_block: AtomicU64::new(0),
        };
        self.objects.insert(k, Arc::new(entry));
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pingora_cache::trace::Span;

    use super::*;

    const PRIMARY: HashBinary = [7; 16];

    #[derive(PartialEq)]
    enum Slot {
        Primary,
        Variant,
    }

    /// Stores a variant as pingora's miss path does: in the primary slot when the lookup found nothing
    /// there, else in the variant's own slot.
    async fn admit(store: &'static ObjectStore, variance: HashBinary, slot: Slot, created: SystemTime, body: &str) {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("Vary", "X-Variant").unwrap();
        let mut meta = CacheMeta::new(created + Duration::from_secs(600), created, 0, 0, header);
        let mut key = CacheKey::new(String::new(), "");
        key.set_primary_bin_override(PRIMARY);
        meta.set_variance(variance);
        if slot == Slot::Variant {
            key.set_variance_key(variance);
        }
        let mut miss = store.get_miss_handler(&key, &meta, &Span::inactive().handle()).await.unwrap();
        miss.write_body(Bytes::copy_from_slice(body.as_bytes()), true).await.unwrap();
        miss.finish().await.unwrap();
    }

    fn body_for(store: &ObjectStore, wanted: Option<HashBinary>, now: SystemTime) -> Option<String> {
        let hit = store.fresh_hit(&PRIMARY, now, |stored| {
            assert!(stored.headers.contains_key("vary"), "the variance is worked out from the primary's Vary");
            wanted
        })?;
        Some(String::from_utf8(hit.body().to_vec()).unwrap())
    }

    #[test]
    fn fresh_hits_find_the_variant_pingora_would() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let store: &'static ObjectStore = Box::leak(Box::new(ObjectStore::new(1 << 20, 1 << 20)));
        let (a, b, c) = ([1; 16], [2; 16], [3; 16]);
        let t0 = SystemTime::now();
        runtime.block_on(async {
            admit(store, a, Slot::Primary, t0, "variant a").await;
            admit(store, b, Slot::Variant, t0 + Duration::from_secs(1), "variant b").await;
        });
        let now = t0 + Duration::from_secs(2);
        assert_eq!(body_for(store, Some(a), now).as_deref(), Some("variant a"), "the primary slot's own variant");
        assert_eq!(body_for(store, Some(b), now).as_deref(), Some("variant b"), "another variant, from its slot");
        assert_eq!(body_for(store, None, now).as_deref(), Some("variant a"), "nothing named varies: the primary");
        assert_eq!(body_for(store, Some(c), now), None, "a variant never stored is a miss");
        assert_eq!(body_for(store, Some(b), t0 + Duration::from_secs(3600)), None, "stale goes to pingora");

        // A new object in the primary slot outdates the variants stored before it (pingora's valid_after).
        runtime.block_on(admit(store, a, Slot::Primary, t0 + Duration::from_secs(5), "variant a, new"));
        let later = t0 + Duration::from_secs(6);
        assert_eq!(body_for(store, Some(a), later).as_deref(), Some("variant a, new"));
        assert_eq!(body_for(store, Some(b), later), None, "variant b was stored before the primary's object");
    }
}
