//! A bounded cache of rewrites, so a query text a principal sends again (a
//! dashboard's refresh, an application's fixed statements) costs a hash lookup
//! instead of a parse, a walk and a print.
//!
//! Owns the cached rewrites and their bound (bytes, not entries: a cached entry
//! weighs its two SQL texts). It never decides anything itself: a miss runs
//! [`rewrite`], and an entry is only ever the exact answer `rewrite` gave for
//! the same SQL text, principal (user and groups) and `generation`. The caller
//! owns `generation` and must change it whenever the policy or the catalog the
//! rewrite read may have changed (the store's revision and the catalog's
//! version); entries of older generations are never returned and age out.
//! Refusals are not cached: they are cheap next to a parse that succeeded, and
//! a flood of distinct bad statements must not evict the good ones.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::policy::{Policy, Principal};
use crate::rewrite::{rewrite, Catalog, RewriteError, Rewritten};

/// Default bound on the cache, in bytes of SQL text held.
pub const DEFAULT_REWRITE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes counted per entry besides its texts (key, tables, bookkeeping).
const ENTRY_OVERHEAD: u64 = 160;

/// The owned key of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    generation: u64,
    user: Box<str>,
    groups: Box<[String]>,
    sql: Box<str>,
}

/// A borrowed view of a key, to look up without allocating.
struct Probe<'a> {
    generation: u64,
    who: &'a Principal,
    sql: &'a str,
}

fn hash_parts<H: Hasher>(h: &mut H, generation: u64, user: &str, groups: &[String], sql: &str) {
    generation.hash(h);
    user.hash(h);
    groups.hash(h);
    sql.hash(h);
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_parts(h, self.generation, &self.user, &self.groups, &self.sql);
    }
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_parts(
            h,
            self.generation,
            &self.who.user,
            &self.who.groups,
            self.sql,
        );
    }
}

impl equivalent::Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, k: &Key) -> bool {
        self.generation == k.generation
            && self.sql == &*k.sql
            && self.who.user == *k.user
            && self.who.groups[..] == k.groups[..]
    }
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<Key, Arc<Rewritten>> for ByBytes {
    fn weight(&self, k: &Key, v: &Arc<Rewritten>) -> u64 {
        ENTRY_OVERHEAD + k.sql.len() as u64 + k.user.len() as u64 + v.sql.len() as u64
    }
}

/// The cache; share it (`&self` methods, internally sharded locks held only
/// for a lookup or an insert, never across a rewrite).
pub struct RewriteCache {
    entries: quick_cache::sync::Cache<Key, Arc<Rewritten>, ByBytes>,
}

impl RewriteCache {
    /// A cache holding at most `max_bytes` of SQL text (0 turns caching off).
    pub fn new(max_bytes: u64) -> RewriteCache {
        // quick_cache wants an item estimate to size its tables: assume ~2 KiB entries.
        let items = (max_bytes / 2048).clamp(16, 1 << 20) as usize;
        RewriteCache {
            entries: quick_cache::sync::Cache::with_weighter(items, max_bytes.max(1), ByBytes),
        }
    }

    /// [`rewrite`], answered from the cache when the same principal sent the
    /// same text under the same `generation`.
    pub fn rewrite(
        &self,
        generation: u64,
        sql: &str,
        policy: &Policy,
        who: &Principal,
        catalog: &dyn Catalog,
    ) -> Result<Arc<Rewritten>, RewriteError> {
        let probe = Probe {
            generation,
            who,
            sql,
        };
        if let Some(hit) = self.entries.get(&probe) {
            return Ok(hit);
        }
        let out = Arc::new(rewrite(sql, policy, who, catalog)?);
        self.entries.insert(
            Key {
                generation,
                user: who.user.as_str().into(),
                groups: who.groups.clone().into_boxed_slice(),
                sql: sql.into(),
            },
            out.clone(),
        );
        Ok(out)
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held now, by the cache's own weighing.
    pub fn bytes(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Grantee;
    use crate::TableKey;
    use std::collections::HashMap;

    fn setup() -> (Policy, HashMap<TableKey, Vec<String>>) {
        let mut p = Policy::new("memory");
        p.grant_table(Grantee::group("staff"), "t").unwrap();
        p.add_row_filter(Grantee::user("ann"), "t", "region = 'EU'")
            .unwrap();
        p.add_row_filter(Grantee::user("bob"), "t", "region = 'US'")
            .unwrap();
        let mut cat = HashMap::new();
        cat.insert(
            p.key("t").unwrap(),
            vec!["id".to_string(), "region".to_string()],
        );
        (p, cat)
    }

    #[test]
    fn a_hit_is_exactly_what_rewrite_answers_for_that_principal() {
        let (p, cat) = setup();
        let cache = RewriteCache::new(DEFAULT_REWRITE_CACHE_BYTES);
        let ann = Principal::new("ann", &["staff"]);
        let bob = Principal::new("bob", &["staff"]);
        let sql = "SELECT * FROM t";
        let a1 = cache.rewrite(1, sql, &p, &ann, &cat).unwrap();
        let a2 = cache.rewrite(1, sql, &p, &ann, &cat).unwrap();
        assert!(Arc::ptr_eq(&a1, &a2), "second call is a hit");
        assert_eq!(*a1, rewrite(sql, &p, &ann, &cat).unwrap());
        // Another user with the same text gets their own rewrite, not ann's.
        let b = cache.rewrite(1, sql, &p, &bob, &cat).unwrap();
        assert!(
            b.sql.contains("'US'") && !b.sql.contains("'EU'"),
            "{}",
            b.sql
        );
        // Same user, other groups: another entry too.
        let ann_out = Principal::new("ann", &[]);
        assert!(cache.rewrite(1, sql, &p, &ann_out, &cat).is_err());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_new_generation_never_sees_old_entries() {
        let (mut p, cat) = setup();
        let cache = RewriteCache::new(DEFAULT_REWRITE_CACHE_BYTES);
        let ann = Principal::new("ann", &["staff"]);
        let sql = "SELECT id FROM t";
        let before = cache.rewrite(1, sql, &p, &ann, &cat).unwrap();
        assert!(before.sql.contains("'EU'"));
        p.add_row_filter(Grantee::user("ann"), "t", "id > 10")
            .unwrap();
        let after = cache.rewrite(2, sql, &p, &ann, &cat).unwrap();
        assert!(after.sql.contains("id > 10"), "{}", after.sql);
        assert!(!Arc::ptr_eq(&before, &after));
    }

    #[test]
    fn refusals_are_not_cached_and_the_bound_holds() {
        let (p, cat) = setup();
        let cache = RewriteCache::new(64 * 1024);
        let ann = Principal::new("ann", &["staff"]);
        assert!(cache.rewrite(1, "DROP TABLE t", &p, &ann, &cat).is_err());
        assert!(cache.is_empty());
        for i in 0..2000 {
            let sql = format!("SELECT id + {i} FROM t WHERE id > {i}");
            cache.rewrite(1, &sql, &p, &ann, &cat).unwrap();
        }
        assert!(cache.bytes() <= 64 * 1024, "{}", cache.bytes());
        assert!(cache.len() < 2000);
    }
}
