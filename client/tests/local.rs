//! The local executor (embedded DuckDB) behind the same trait as a remote agent: same
//! typed rows for the same SQL, pages, errors, deadline interrupts.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{AgentClient, AgentConfig, ClientError, Executor, LocalExecutor, Value, Via};
use common::*;

const SAME_SQL: &str = "SELECT 1::INTEGER AS a, 'x' AS b, DATE '2024-01-02' AS d, 2.50::DECIMAL(5,2) AS m, \
                        [1, 2] AS l, NULL::VARCHAR AS n, TRUE AS t, 1.5::DOUBLE AS f, \
                        TIMESTAMP '2024-01-02 03:04:05.25' AS ts, INTERVAL 3 DAY AS iv, 300::UHUGEINT AS uh";

#[test]
fn local_and_remote_give_the_same_typed_rows() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let remote: Arc<dyn Executor> =
            Arc::new(AgentClient::new(AgentConfig::new("a", &a.url(), TOKEN)).unwrap());
        let local: Arc<dyn Executor> = LocalExecutor::open(None).unwrap();
        let r = remote.run(SAME_SQL, after(PATIENCE)).await.unwrap();
        let l = local.run(SAME_SQL, after(PATIENCE)).await.unwrap();
        assert_eq!(l.via, Via::Local);
        assert_eq!(r.columns, l.columns);
        assert_eq!(l.column_types[0], "INTEGER");
        assert_eq!(l.column_types[3], "DECIMAL(5,2)");
        let (rr, lr) = (r.collect().await.unwrap(), l.collect().await.unwrap());
        assert_eq!(rr, lr, "remote {rr:?}\nlocal {lr:?}");
        assert_eq!(lr[0][0], Value::Int(1));
        assert_eq!(lr[0][3], Value::Decimal("2.50".into()));
    });
}

#[test]
fn local_pages_errors_and_deadlines() {
    let rt = runtime();
    rt.block_on(async {
        let l = LocalExecutor::open(None).unwrap();
        let mut rows = l
            .run(
                "SELECT i FROM range(10000) t(i) ORDER BY i",
                after(PATIENCE),
            )
            .await
            .unwrap();
        let mut next = 0i64;
        let mut pages = 0;
        while let Some(p) = rows.next_page().await.unwrap() {
            pages += 1;
            for r in p {
                assert_eq!(r[0], Value::Int(next));
                next += 1;
            }
        }
        assert_eq!((next, pages > 1), (10000, true));
        let e = l
            .run("SELECT * FROM nope", after(PATIENCE))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ClientError::Execution { message, .. } if message.contains("nope")),
            "{e:?}"
        );
        let t = Instant::now();
        let e = l
            .run(SLOW_SQL, after(Duration::from_millis(300)))
            .await
            .unwrap_err();
        assert_eq!(e, ClientError::Timeout);
        assert!(t.elapsed() < Duration::from_secs(20));
        // Still usable afterwards.
        let v = l
            .run("SELECT 3", after(PATIENCE))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(v, vec![vec![Value::Int(3)]]);
    });
}
