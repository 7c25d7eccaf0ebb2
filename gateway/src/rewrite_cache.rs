//! A bounded cache of rewrites, so a query text a principal sends again (a
//! dashboard's refresh, an application's fixed statements) costs a hash lookup
//! instead of a parse, a walk and a print; and of rewrite templates
//! ([`crate::rewrite_shape`]), so a text that differs from an earlier one only
//! in its literals costs a tokenization and a fill.
//!
//! Owns the cached rewrites and templates and their bound (bytes, not
//! entries: an entry weighs its texts). It never decides anything itself: a
//! miss runs the rewriter, an exact entry is only ever the answer the
//! rewriter gave for the same SQL text, principal (user and groups) and
//! [`Generation`], and a template is only ever one its module proved against
//! the rewriter for the same principal and generation. The caller owns the
//! generation: a number that identifies the policy and one that identifies
//! the catalog the rewrite reads, each new whenever what it names may have
//! changed (never reused for other contents in the process); entries of
//! older generations are never returned and age out.
//! Refusals are not cached: they are cheap next to a parse that succeeded, and
//! a flood of distinct bad statements must not evict the good ones. A
//! template is built the second time a shape is seen, not the first, so a
//! flood of one-off shapes costs no more than their rewrites.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::access::{AccessControl, Principal};
use crate::rewrite::{rewrite_tokens, tokenize, Catalog, RewriteError, Rewritten};
use crate::rewrite_shape::{hash_shape_of, literals, Shape, Template};
use sqlparser::tokenizer::TokenWithSpan;

/// What [`RewriteCache::lookup`] found.
pub enum Lookup {
    /// The rewrite, from the cache or a template.
    Hit(Arc<Rewritten>),
    /// Not known: the full rewrite is [`RewriteCache::complete`]'s.
    Miss(Miss),
}

/// A statement the cache could not answer: its tokens, and whether its
/// shape is seen for the second time (so a template is built for it).
pub struct Miss {
    tokens: Vec<TokenWithSpan>,
    learn: bool,
}

/// Default bound on the cache, in bytes of SQL text held.
pub const DEFAULT_REWRITE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes counted per entry besides its texts (key, tables, bookkeeping).
const ENTRY_OVERHEAD: u64 = 160;

/// Which policy and which catalog a rewrite read: process-unique numbers the
/// caller draws whenever it builds a new policy or reads a catalog anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation {
    pub policy: u64,
    pub catalog: u64,
}

/// The owned key of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    generation: Generation,
    user: Box<str>,
    groups: Box<[String]>,
    sql: Box<str>,
}

/// A borrowed view of a key, to look up without allocating.
struct Probe<'a> {
    generation: Generation,
    who: &'a Principal,
    sql: &'a str,
}

fn hash_parts<H: Hasher>(
    h: &mut H,
    generation: Generation,
    user: &str,
    groups: &[String],
    sql: &str,
) {
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

/// The owned key of one template: the principal and generation as for an
/// exact entry, and the statement's shape instead of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShapeKey {
    generation: Generation,
    user: Box<str>,
    groups: Box<[String]>,
    shape: Shape,
}

/// A borrowed view of a shape key: a statement's tokens.
struct ShapeProbe<'a> {
    generation: Generation,
    who: &'a Principal,
    tokens: &'a [TokenWithSpan],
}

impl Hash for ShapeKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.generation.hash(h);
        self.user.hash(h);
        self.groups.hash(h);
        self.shape.hash_into(h);
    }
}

impl Hash for ShapeProbe<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.generation.hash(h);
        self.who.user.hash(h);
        self.who.groups.hash(h);
        hash_shape_of(h, self.tokens);
    }
}

impl equivalent::Equivalent<ShapeKey> for ShapeProbe<'_> {
    fn equivalent(&self, k: &ShapeKey) -> bool {
        self.generation == k.generation
            && self.who.user == *k.user
            && self.who.groups[..] == k.groups[..]
            && k.shape.matches(self.tokens)
    }
}

/// What is known of a shape: its proven template, or that it has none (so
/// the proof is not tried again for every statement of that shape).
struct ShapeEntry {
    template: Option<Template>,
    weight: u64,
}

#[derive(Clone)]
struct ShapeBytes;

impl quick_cache::Weighter<ShapeKey, Arc<ShapeEntry>> for ShapeBytes {
    fn weight(&self, _: &ShapeKey, v: &Arc<ShapeEntry>) -> u64 {
        v.weight
    }
}

/// The cache; share it (`&self` methods, internally sharded locks held only
/// for a lookup or an insert, never across a rewrite).
pub struct RewriteCache {
    entries: quick_cache::sync::Cache<Key, Arc<Rewritten>, ByBytes>,
    shapes: quick_cache::sync::Cache<ShapeKey, Arc<ShapeEntry>, ShapeBytes>,
    /// Hashes of shape keys seen once: a template is built on the second sight.
    seen: quick_cache::sync::Cache<u64, ()>,
    seen_hasher: std::collections::hash_map::RandomState,
    /// Statements answered by filling a template.
    filled: std::sync::atomic::AtomicU64,
}

impl RewriteCache {
    /// A cache holding at most `max_bytes` of SQL text and templates, half
    /// for each (0 turns caching off).
    pub fn new(max_bytes: u64) -> RewriteCache {
        let half = (max_bytes / 2).max(1);
        // quick_cache wants an item estimate to size its tables: assume ~2 KiB entries.
        let items = (half / 2048).clamp(16, 1 << 20) as usize;
        RewriteCache {
            entries: quick_cache::sync::Cache::with_weighter(items, half, ByBytes),
            shapes: quick_cache::sync::Cache::with_weighter(items, half, ShapeBytes),
            seen: quick_cache::sync::Cache::new(4 * items),
            seen_hasher: Default::default(),
            filled: Default::default(),
        }
    }

    /// [`rewrite`], answered from the cache when the same principal sent the
    /// same text under the same `generation`; a miss is rewritten and kept
    /// unchecked (see [`Self::complete`] for the checked path).
    pub fn rewrite(
        &self,
        generation: Generation,
        sql: &str,
        policy: &dyn AccessControl,
        who: &Principal,
        catalog: &dyn Catalog,
    ) -> Result<Arc<Rewritten>, RewriteError> {
        match self.lookup(generation, sql, who)? {
            Lookup::Hit(r) => Ok(r),
            Lookup::Miss(miss) => {
                self.complete(miss, generation, sql, policy, who, catalog, |_| Ok(()))
            }
        }
    }

    /// The cheap half of a rewrite, for the caller's own thread: the cached
    /// rewrite of the same text, or the fill of a proven template of the same
    /// shape; else the tokens, for [`Self::complete`].
    pub fn lookup(
        &self,
        generation: Generation,
        sql: &str,
        who: &Principal,
    ) -> Result<Lookup, RewriteError> {
        let probe = Probe {
            generation,
            who,
            sql,
        };
        if let Some(hit) = self.entries.get(&probe) {
            return Ok(Lookup::Hit(hit));
        }
        let tokens = tokenize(sql)?;
        let shape = ShapeProbe {
            generation,
            who,
            tokens: &tokens,
        };
        let known = self.shapes.get(&shape);
        let filled = known
            .as_ref()
            .and_then(|e| e.template.as_ref())
            .and_then(|t| t.fill(&literals(&tokens)));
        if let Some(r) = filled {
            self.filled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let out = Arc::new(r);
            self.keep(generation, sql, who, &out);
            return Ok(Lookup::Hit(out));
        }
        let learn = known.is_none() && self.saw(&shape);
        Ok(Lookup::Miss(Miss { tokens, learn }))
    }

    /// The full rewrite of a [`Lookup::Miss`], proven by `verify` before it
    /// is kept (and before its shape's template is built): a rewrite `verify`
    /// refuses is neither cached nor returned. May block in `verify`: the
    /// caller picks the thread.
    #[allow(clippy::too_many_arguments)]
    pub fn complete<E: From<RewriteError>>(
        &self,
        miss: Miss,
        generation: Generation,
        sql: &str,
        policy: &dyn AccessControl,
        who: &Principal,
        catalog: &dyn Catalog,
        verify: impl FnOnce(&Rewritten) -> Result<(), E>,
    ) -> Result<Arc<Rewritten>, E> {
        let Miss { tokens, learn } = miss;
        let kept = learn.then(|| tokens.clone());
        let out = Arc::new(rewrite_tokens(tokens, policy, who, catalog)?);
        verify(&out)?;
        if let Some(tokens) = kept {
            self.learn(generation, who, &tokens, &out, policy, catalog);
        }
        self.keep(generation, sql, who, &out);
        Ok(out)
    }

    fn keep(&self, generation: Generation, sql: &str, who: &Principal, out: &Arc<Rewritten>) {
        self.entries.insert(
            Key {
                generation,
                user: who.user.as_str().into(),
                groups: who.groups.clone().into_boxed_slice(),
                sql: sql.into(),
            },
            out.clone(),
        );
    }

    /// Records a sight of a shape; true when it was seen before.
    fn saw(&self, shape: &ShapeProbe<'_>) -> bool {
        use std::hash::BuildHasher;
        let h = self.seen_hasher.hash_one(shape);
        if self.seen.get(&h).is_some() {
            return true;
        }
        self.seen.insert(h, ());
        false
    }

    /// Builds and keeps the template of the shape of `tokens` (or that it has
    /// none), given their full rewrite.
    fn learn(
        &self,
        generation: Generation,
        who: &Principal,
        tokens: &[TokenWithSpan],
        full: &Rewritten,
        policy: &dyn AccessControl,
        catalog: &dyn Catalog,
    ) {
        let template = Template::build(tokens, full, |t| rewrite_tokens(t, policy, who, catalog));
        let shape = Shape::of(tokens);
        let weight = ENTRY_OVERHEAD
            + who.user.len() as u64
            + shape.weight()
            + template.as_ref().map_or(0, Template::weight);
        self.shapes.insert(
            ShapeKey {
                generation,
                user: who.user.as_str().into(),
                groups: who.groups.clone().into_boxed_slice(),
                shape,
            },
            Arc::new(ShapeEntry { template, weight }),
        );
    }

    /// Statements answered from a template so far.
    pub fn filled(&self) -> u64 {
        self.filled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Templates (and shapes known to have none) held now.
    pub fn shapes_len(&self) -> usize {
        self.shapes.len()
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
        self.entries.weight() + self.shapes.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Grantee, Policy};
    use crate::rewrite::rewrite;
    use crate::TableKey;
    use std::collections::HashMap;

    fn generation(policy: u64) -> Generation {
        Generation { policy, catalog: 7 }
    }

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
        let a1 = cache.rewrite(generation(1), sql, &p, &ann, &cat).unwrap();
        let a2 = cache.rewrite(generation(1), sql, &p, &ann, &cat).unwrap();
        assert!(Arc::ptr_eq(&a1, &a2), "second call is a hit");
        assert_eq!(*a1, rewrite(sql, &p, &ann, &cat).unwrap());
        // Another user with the same text gets their own rewrite, not ann's.
        let b = cache.rewrite(generation(1), sql, &p, &bob, &cat).unwrap();
        assert!(
            b.sql.contains("'US'") && !b.sql.contains("'EU'"),
            "{}",
            b.sql
        );
        // Same user, other groups: another entry too.
        let ann_out = Principal::new("ann", &[]);
        assert!(cache
            .rewrite(generation(1), sql, &p, &ann_out, &cat)
            .is_err());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_new_generation_never_sees_old_entries() {
        let (mut p, cat) = setup();
        let cache = RewriteCache::new(DEFAULT_REWRITE_CACHE_BYTES);
        let ann = Principal::new("ann", &["staff"]);
        let sql = "SELECT id FROM t";
        let before = cache.rewrite(generation(1), sql, &p, &ann, &cat).unwrap();
        assert!(before.sql.contains("'EU'"));
        p.add_row_filter(Grantee::user("ann"), "t", "id > 10")
            .unwrap();
        let after = cache.rewrite(generation(2), sql, &p, &ann, &cat).unwrap();
        assert!(after.sql.contains("id > 10"), "{}", after.sql);
        assert!(!Arc::ptr_eq(&before, &after));
    }

    #[test]
    fn a_known_shape_is_filled_from_its_template_as_rewrite_would_answer() {
        let (p, cat) = setup();
        let cache = RewriteCache::new(DEFAULT_REWRITE_CACHE_BYTES);
        let ann = Principal::new("ann", &["staff"]);
        let bob = Principal::new("bob", &["staff"]);
        let sql = |n: u32, s: &str| {
            format!(
                "SELECT id, region FROM t WHERE id > {n} AND region <> '{}' LIMIT {}",
                s.replace('\'', "''"),
                n + 1
            )
        };
        // First sight of the shape: no template; second: built and proven.
        cache
            .rewrite(generation(1), &sql(1, "a"), &p, &ann, &cat)
            .unwrap();
        assert_eq!(cache.shapes_len(), 0);
        cache
            .rewrite(generation(1), &sql(2, "b"), &p, &ann, &cat)
            .unwrap();
        assert_eq!(cache.shapes_len(), 1);
        assert_eq!(cache.filled(), 0);
        for (i, s) in ["it's", "EU", "", "x' OR 1=1 --", "$$", "gw0s0q"]
            .iter()
            .enumerate()
        {
            let text = sql(10 + i as u32, s);
            let got = cache.rewrite(generation(1), &text, &p, &ann, &cat).unwrap();
            assert_eq!(*got, rewrite(&text, &p, &ann, &cat).unwrap(), "{text}");
            assert!(got.sql.contains("'EU'"), "ann's filter: {}", got.sql);
        }
        assert_eq!(cache.filled(), 6);
        // Another principal never fills ann's template.
        let got = cache
            .rewrite(generation(1), &sql(99, "z"), &p, &bob, &cat)
            .unwrap();
        assert!(
            got.sql.contains("'US'") && !got.sql.contains("'EU'"),
            "{}",
            got.sql
        );
        assert_eq!(cache.filled(), 6);
        // Nor does a new policy generation.
        cache
            .rewrite(generation(2), &sql(98, "z"), &p, &ann, &cat)
            .unwrap();
        assert_eq!(cache.filled(), 6);
    }

    #[test]
    fn refusals_are_not_cached_and_the_bound_holds() {
        let (p, cat) = setup();
        let cache = RewriteCache::new(64 * 1024);
        let ann = Principal::new("ann", &["staff"]);
        assert!(cache
            .rewrite(generation(1), "DROP TABLE t", &p, &ann, &cat)
            .is_err());
        assert!(cache.is_empty());
        for i in 0..2000 {
            let sql = format!("SELECT id + {i} FROM t WHERE id > {i}");
            cache.rewrite(generation(1), &sql, &p, &ann, &cat).unwrap();
        }
        assert!(cache.bytes() <= 64 * 1024, "{}", cache.bytes());
        assert!(cache.len() < 2000);
    }
}
