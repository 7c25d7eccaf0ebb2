//! `proto/compute_worker.proto` stays in step with the client's wire types: every JSON
//! field of every wire type has a proto field of the same name (in the mapped message,
//! or in a message one of its fields refers to), and the service has every RPC.
//! The .proto is parsed as text; no protoc needed.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Records the field names serde's derive passes to `deserialize_struct`.
struct FieldNames<'a>(&'a mut Vec<&'static str>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    let mut v = Vec::new();
    let _ = T::deserialize(FieldNames(&mut v));
    assert!(
        !v.is_empty(),
        "{} has no fields?",
        std::any::type_name::<T>()
    );
    v
}

/// message name -> (field name -> type)
fn parse_proto(text: &str) -> (BTreeMap<String, BTreeMap<String, String>>, BTreeSet<String>) {
    let clean: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut messages = BTreeMap::new();
    let mut rpcs = BTreeSet::new();
    let mut rest = clean.as_str();
    while let Some(i) = rest.find("message ") {
        rest = &rest[i + "message ".len()..];
        let name = rest
            .split(|c: char| c.is_whitespace() || c == '{')
            .next()
            .unwrap()
            .to_string();
        let open = rest.find('{').unwrap();
        let close = rest.find('}').unwrap();
        let body = &rest[open + 1..close];
        let mut fields = BTreeMap::new();
        for decl in body.split(';') {
            let decl = decl.trim();
            if decl.is_empty() {
                continue;
            }
            let (lhs, num) = decl
                .split_once('=')
                .unwrap_or_else(|| panic!("bad field {decl:?} in {name}"));
            num.trim()
                .parse::<u32>()
                .unwrap_or_else(|_| panic!("bad number in {decl:?}"));
            let words: Vec<&str> = lhs.split_whitespace().collect();
            let (ty, field) = match words.as_slice() {
                [ty, f] => (ty, f),
                ["repeated" | "optional", ty, f] => (ty, f),
                _ => panic!("bad field {decl:?} in {name}"),
            };
            assert!(
                fields.insert(field.to_string(), ty.to_string()).is_none(),
                "{name}.{field} twice"
            );
        }
        messages.insert(name, fields);
        rest = &rest[close + 1..];
    }
    for l in clean.lines() {
        if let Some(r) = l.trim().strip_prefix("rpc ") {
            rpcs.insert(r.split('(').next().unwrap().trim().to_string());
        }
    }
    (messages, rpcs)
}

#[test]
fn every_json_field_has_a_proto_counterpart() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/compute_worker.proto");
    let text = std::fs::read_to_string(path).expect("read proto");
    let (messages, rpcs) = parse_proto(&text);
    for rpc in [
        "Execute",
        "SubmitQuery",
        "GetQueryStatus",
        "FetchQueryResults",
        "CancelQuery",
        "DeleteQuery",
        "Health",
    ] {
        assert!(rpcs.contains(rpc), "service ComputeWorker lacks rpc {rpc}");
    }
    use client::wire::*;
    let pairs: Vec<(&str, Vec<&'static str>, &[&str])> = vec![
        (
            "QueryRequest",
            fields_of::<QueryRequest>(),
            &["ExecuteRequest", "SubmitQueryRequest"],
        ),
        (
            "ExecuteResponse",
            fields_of::<ExecuteResponse>(),
            &["ExecuteResponse"],
        ),
        (
            "IdStatus",
            fields_of::<IdStatus>(),
            &[
                "SubmitQueryResponse",
                "CancelQueryResponse",
                "DeleteQueryResponse",
            ],
        ),
        (
            "QueryStatus",
            fields_of::<QueryStatus>(),
            &["QueryStatusResponse"],
        ),
        (
            "ResultsPage",
            fields_of::<ResultsPage>(),
            &["FetchQueryResultsResponse"],
        ),
        ("Health", fields_of::<Health>(), &["HealthResponse"]),
        ("ErrorBody", fields_of::<ErrorBody>(), &["ErrorDetail"]),
    ];
    let mut missing = Vec::new();
    for (wire, fields, targets) in pairs {
        for msg in targets {
            let m = messages
                .get(*msg)
                .unwrap_or_else(|| panic!("proto lacks message {msg}"));
            for f in &fields {
                let direct = m.contains_key(*f);
                // Or one level down: ExecuteRequest.context.request_id.
                let nested = m
                    .values()
                    .any(|ty| messages.get(ty).is_some_and(|sub| sub.contains_key(*f)));
                if !direct && !nested {
                    missing.push(format!("{wire}.{f} -> {msg}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "JSON fields without a proto counterpart: {missing:?}"
    );
}

#[test]
fn the_checker_notices_a_missing_field() {
    let (m, _) = parse_proto(
        "message A {\n  string x = 1; // c\n  repeated B y = 2;\n}\nmessage B { int64 z = 1; }",
    );
    assert!(m["A"].contains_key("x") && m["A"].contains_key("y") && m["B"].contains_key("z"));
    assert!(!m["A"].contains_key("w"));
    assert!(fields_of::<client::wire::Health>().contains(&"queued_jobs"));
}
