//! The read path's caches: enforced queries (and `match[]` lists) by tenant, policy identity,
//! limits and text, so a dashboard's repeated queries skip parsing and rewriting; and each
//! tenant's [`CompiledPolicy`], compiled on its first request.
//!
//! Why a cached answer can't be another tenant's or an old policy's: the key holds the
//! tenant's namespace and its `Arc<Policy>`, compared by pointer. Every tenant gets its own
//! `Arc` when the tenant store is built, a policy change (file, CRD, reload) builds a new one,
//! and the key keeps the `Arc` alive, so its address can't be reused by another policy while
//! the entry exists. An unchanged policy keeps its `Arc` across reloads (`TenantStore::replace`),
//! so its entries stay valid. The limits are part of the key because they change the answer.
//!
//! Both caches are bounded (`quick_cache`, S3-FIFO eviction): enforced queries by the bytes of
//! their texts (`proxy.rewrite_cache_bytes`, 0 turns that cache off), compiled policies by
//! count.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};

use super::{CompiledPolicy, EnforceError, EnforceLimits};
use crate::tenant::Policy;

/// Compiled policies kept (one per tenant that has sent a request since its policy changed).
const MAX_COMPILED_POLICIES: usize = 16_384;
/// Bookkeeping charged to every cached query besides its texts (key, value, table slot).
const ENTRY_OVERHEAD: u64 = 160;
/// A guess of the average entry, to size the table up front.
const TYPICAL_ENTRY_BYTES: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Query,
    Match,
}

/// An owned key: what the cache stores.
struct Key {
    policy: Arc<Policy>,
    tenant: Box<str>,
    limits: EnforceLimits,
    kind: Kind,
    text: Box<str>,
}

/// A borrowed key: what a request looks up with, without allocating.
struct Lookup<'a> {
    policy: &'a Arc<Policy>,
    tenant: &'a str,
    limits: &'a EnforceLimits,
    kind: Kind,
    text: &'a str,
}

fn hash_parts<H: Hasher>(
    state: &mut H,
    policy: &Arc<Policy>,
    tenant: &str,
    limits: &EnforceLimits,
    kind: Kind,
    text: &str,
) {
    std::ptr::hash(Arc::as_ptr(policy), state);
    tenant.hash(state);
    limits.hash(state);
    kind.hash(state);
    text.hash(state);
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(
            state,
            &self.policy,
            &self.tenant,
            &self.limits,
            self.kind,
            &self.text,
        );
    }
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(
            state,
            self.policy,
            self.tenant,
            self.limits,
            self.kind,
            self.text,
        );
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        Arc::ptr_eq(&self.policy, &other.policy)
            && self.tenant == other.tenant
            && self.limits == other.limits
            && self.kind == other.kind
            && self.text == other.text
    }
}

impl Eq for Key {}

impl Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        Arc::ptr_eq(self.policy, &key.policy)
            && self.tenant == &*key.tenant
            && *self.limits == key.limits
            && self.kind == key.kind
            && self.text == &*key.text
    }
}

#[derive(Clone)]
enum Value {
    Query(Result<Arc<str>, EnforceError>),
    Match(Result<Arc<[String]>, EnforceError>),
}

#[derive(Clone)]
struct Bytes;

impl Weighter<Key, Value> for Bytes {
    fn weight(&self, key: &Key, value: &Value) -> u64 {
        let error = |e: &EnforceError| std::mem::size_of_val(e) + e.to_string().len();
        let value = match value {
            Value::Query(Ok(text)) => text.len(),
            Value::Match(Ok(list)) => list.iter().map(String::len).sum(),
            Value::Query(Err(e)) | Value::Match(Err(e)) => error(e),
        };
        ENTRY_OVERHEAD + (key.text.len() + key.tenant.len() + value) as u64
    }
}

/// A compiled policy's key: the policy's identity (held, so the address stays taken).
struct PolicyKey(Arc<Policy>);

impl Hash for PolicyKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

impl PartialEq for PolicyKey {
    fn eq(&self, other: &PolicyKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PolicyKey {}

struct PolicyLookup<'a>(&'a Arc<Policy>);

impl Hash for PolicyLookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(self.0), state);
    }
}

impl Equivalent<PolicyKey> for PolicyLookup<'_> {
    fn equivalent(&self, key: &PolicyKey) -> bool {
        Arc::ptr_eq(self.0, &key.0)
    }
}

/// What `/metrics` shows of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriteCacheStats {
    pub entries: usize,
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub compiled_policies: usize,
}

/// The enforcement entry point of the HTTP layer: cached rewrites over compiled policies.
pub struct RewriteCache {
    rewrites: Option<Cache<Key, Value, Bytes>>,
    policies: Cache<PolicyKey, Arc<CompiledPolicy>>,
    hits: Counter,
    misses: Counter,
}

impl std::fmt::Debug for RewriteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewriteCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl RewriteCache {
    /// A cache of at most `max_bytes` of query texts (0: enforce every request afresh), with
    /// counters of its own.
    pub fn new(max_bytes: usize) -> RewriteCache {
        Self::with_counters(max_bytes, Counter::default(), Counter::default())
    }

    /// As [`RewriteCache::new`], counting hits and misses on the given (registered) counters.
    pub fn with_counters(max_bytes: usize, hits: Counter, misses: Counter) -> RewriteCache {
        let rewrites = (max_bytes > 0).then(|| {
            let items = (max_bytes / TYPICAL_ENTRY_BYTES).max(16);
            Cache::with_weighter(items, max_bytes as u64, Bytes)
        });
        RewriteCache {
            rewrites,
            policies: Cache::new(MAX_COMPILED_POLICIES),
            hits,
            misses,
        }
    }

    /// The weight limit in bytes (0 when off).
    pub fn capacity_bytes(&self) -> u64 {
        self.rewrites.as_ref().map_or(0, Cache::capacity)
    }

    pub fn stats(&self) -> RewriteCacheStats {
        RewriteCacheStats {
            entries: self.rewrites.as_ref().map_or(0, Cache::len),
            bytes: self.rewrites.as_ref().map_or(0, Cache::weight),
            capacity_bytes: self.capacity_bytes(),
            hits: self.hits.get(),
            misses: self.misses.get(),
            compiled_policies: self.policies.len(),
        }
    }

    /// The tenant's policy compiled (once per policy identity).
    pub fn compiled(&self, policy: &Arc<Policy>) -> Result<Arc<CompiledPolicy>, EnforceError> {
        if let Some(compiled) = self.policies.get(&PolicyLookup(policy)) {
            return Ok(compiled);
        }
        let compiled = Arc::new(CompiledPolicy::new(policy.clone())?);
        self.policies
            .insert(PolicyKey(policy.clone()), compiled.clone());
        Ok(compiled)
    }

    /// [`super::enforce_query`] for `tenant`, whose policy is `policy`, from the cache when
    /// this very query was enforced for this very policy before.
    pub fn enforce_query(
        &self,
        tenant: &str,
        policy: &Arc<Policy>,
        query: &str,
        limits: &EnforceLimits,
    ) -> Result<Arc<str>, EnforceError> {
        if policy.is_empty() {
            return Err(EnforceError::NoAccess);
        }
        let lookup = Lookup {
            policy,
            tenant,
            limits,
            kind: Kind::Query,
            text: query,
        };
        if let Some(Value::Query(cached)) = self.get(&lookup) {
            return cached;
        }
        let result = self
            .compiled(policy)
            .and_then(|c| c.enforce_query(query, limits))
            .map(Arc::from);
        self.put(&lookup, Value::Query(result.clone()));
        result
    }

    /// [`super::enforce_match_selectors`] for `tenant`, cached like [`Self::enforce_query`].
    pub fn enforce_match_selectors(
        &self,
        tenant: &str,
        policy: &Arc<Policy>,
        matches: &[String],
        limits: &EnforceLimits,
    ) -> Result<Arc<[String]>, EnforceError> {
        if policy.is_empty() {
            return Err(EnforceError::NoAccess);
        }
        // Length-prefixed, so no two lists share a key text.
        let mut text = String::with_capacity(matches.iter().map(|m| m.len() + 8).sum());
        for m in matches {
            text.push_str(&m.len().to_string());
            text.push(':');
            text.push_str(m);
        }
        let lookup = Lookup {
            policy,
            tenant,
            limits,
            kind: Kind::Match,
            text: &text,
        };
        if let Some(Value::Match(cached)) = self.get(&lookup) {
            return cached;
        }
        let result = self
            .compiled(policy)
            .and_then(|c| c.enforce_match_selectors(matches, limits))
            .map(Arc::from);
        self.put(&lookup, Value::Match(result.clone()));
        result
    }

    fn get(&self, lookup: &Lookup<'_>) -> Option<Value> {
        let cache = self.rewrites.as_ref()?;
        let found = cache.get(lookup);
        if found.is_some() {
            self.hits.inc();
        } else {
            self.misses.inc();
        }
        found
    }

    fn put(&self, lookup: &Lookup<'_>, value: Value) {
        if let Some(cache) = &self.rewrites {
            let key = Key {
                policy: lookup.policy.clone(),
                tenant: lookup.tenant.into(),
                limits: *lookup.limits,
                kind: lookup.kind,
                text: lookup.text.into(),
            };
            cache.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests;
