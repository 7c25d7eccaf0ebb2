//! Property test of rewrite templates: statements of one shape with random
//! literals (hostile strings, odd numbers, text aimed at the sentinels),
//! answered through the rewrite cache (so from a template once the shape is
//! known), get exactly what the rewriter answers for each of them, refusals
//! included.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::rewrite_cache::{Generation, RewriteCache, DEFAULT_REWRITE_CACHE_BYTES};

/// Statement forms; `{N}` takes a number, `{S}` a string literal.
const FORMS: &[&str] = &[
    "SELECT t.id, t.email FROM users t WHERE t.id > {N} AND t.name <> {S}",
    "SELECT o.id, o.amount FROM orders o JOIN users u ON u.id = o.user_id WHERE o.amount BETWEEN {N} AND {N} ORDER BY 1 LIMIT {N}",
    "SELECT {S} AS tag, count(*) FROM users GROUP BY 1",
    "SELECT CAST(amount AS DECIMAL({N}, 2)) FROM orders WHERE region IN ({S}, {S})",
    "WITH x AS (SELECT {N} AS n, {S} AS s) SELECT * FROM x, users WHERE users.id = x.n",
    "SELECT * FROM users WHERE email LIKE {S} UNION ALL SELECT * FROM users WHERE id = {N}",
    "SELECT {S} {S} AS glued FROM users",
    "SELECT id AS {S} FROM users",
    "SELECT * FROM users LIMIT {N} OFFSET {N}",
    "SELECT DATE {S}, INTERVAL {S} DAY, {N}L FROM users",
    "SELECT * FROM {S}",
    "SELECT payload FROM secrets WHERE id = {N}",
    "SELECT $$a'$$, {S} FROM users -- {S}\n WHERE id = {N}",
    "SELECT \"name\" AS \"x{N}\" FROM users WHERE id IN ({N}, -{N}, {N}.5)",
];

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..1000).prop_map(|n| n.to_string()),
        Just("0".to_string()),
        Just("007".to_string()),
        Just("999999999999999999".to_string()),
        Just("7316000000000000000".to_string()),
        Just("7316000000000000001".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1.5".to_string()),
        Just("1e3".to_string()),
    ]
}

fn string() -> impl Strategy<Value = String> {
    let raw = prop_oneof![
        hostile_text(8),
        Just("gw0000000000000000s0q".to_string()),
        Just("EU".to_string()),
        Just("2026-01-01".to_string()),
        Just("1".to_string()),
        Just("users".to_string()),
    ];
    raw.prop_map(|s| format!("'{}'", s.replace('\'', "''")))
}

/// A form with its holes filled.
fn fill(form: &str, numbers: &[String], strings: &[String]) -> String {
    let (mut n, mut s) = (numbers.iter().cycle(), strings.iter().cycle());
    let mut out = String::new();
    let mut rest = form;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let hole = &rest[i..i + 3];
        out.push_str(match hole {
            "{N}" => n.next().unwrap(),
            _ => s.next().unwrap(),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn templates_answer_as_the_rewriter_does(
        form in proptest::sample::select(FORMS),
        variants in proptest::collection::vec(
            (proptest::collection::vec(number(), 4), proptest::collection::vec(string(), 4)),
            2..6,
        ),
    ) {
        let p = policy();
        let cat = catalog(&p);
        let who = ann();
        let cache = RewriteCache::new(DEFAULT_REWRITE_CACHE_BYTES);
        let generation = Generation { policy: 1, catalog: 1 };
        for text in variants.iter().map(|(n, s)| fill(form, n, s)) {
            let text = &text;
            let got = cache.rewrite(generation, text, &p, &who, &cat).map(Arc::unwrap_or_clone);
            let want = rewrite(text, &p, &who, &cat);
            prop_assert_eq!(got, want, "{}", text);
        }
    }
}
