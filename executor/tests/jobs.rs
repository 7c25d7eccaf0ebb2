//! Job lifecycle on real shards and real DuckDB: routing across shards,
//! idempotent submits, paging, cancel, delete, expiry, limits, long-poll.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use executor::{Engine, EngineConfig, EngineError, JobError, QueryId, RunOptions, Status, Waited};

/// A statement that keeps DuckDB busy for hours unless interrupted, in
/// constant memory (a streaming range into an aggregate).
const LONG_SQL: &str = "SELECT sum(i * 2) FROM range(1000000000000) t(i)";

async fn wait_terminal(shard: &executor::Shard, id: QueryId) -> executor::JobStatus {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let s = shard
            .status(id, Some(Duration::from_secs(5)))
            .await
            .expect("status");
        if s.status.is_terminal() || Instant::now() > end {
            return s;
        }
    }
}

#[test]
fn lifecycle_across_shards_with_pages_equal_to_the_whole() {
    let engine = open(config(3));
    let ids = Arc::new(Mutex::new(Vec::<QueryId>::new()));
    let stage = Arc::new(AtomicUsize::new(0));
    let (ids2, stage2) = (ids.clone(), stage.clone());
    run_shards(&engine, move |shard| {
        let ids = ids2.clone();
        let stage = stage2.clone();
        async move {
            if shard.index() == 0 {
                // Shard 0 creates the jobs (they live here); the others read them.
                for n in [0usize, 1, 999, 1000, 1001, 12_345] {
                    let sub = shard
                        .submit(
                            format!("SELECT i, 'row ' || i AS s FROM range({n}) t(i) ORDER BY i"),
                            None,
                        )
                        .await
                        .unwrap();
                    assert_eq!(sub.status, Status::Queued);
                    assert!(!sub.existing);
                    ids.lock().unwrap().push(sub.id);
                }
                stage.store(1, Ordering::SeqCst);
            } else {
                assert!(
                    eventually(Duration::from_secs(60), || stage.load(Ordering::SeqCst)
                        == 1)
                    .await
                );
                let my_ids = ids.lock().unwrap().clone();
                for (k, id) in my_ids.into_iter().enumerate() {
                    let st = wait_terminal(&shard, id).await;
                    assert_eq!(st.status, Status::Succeeded, "{st:?}");
                    assert!(st.completed_at.is_some());
                    let result = st.result.clone().unwrap();
                    let n = [0usize, 1, 999, 1000, 1001, 12_345][k];
                    assert_eq!(result.row_count(), n);
                    let mut whole = Vec::new();
                    result.write_rows(0..n, &mut whole);
                    let whole = parse(&whole);
                    // Pages of several sizes, fetched through this (non-owning) shard.
                    for size in [1usize, 7, 1000, 5000] {
                        let mut offset = 0;
                        let mut joined = Vec::new();
                        loop {
                            let page = shard.page(id, offset, size).await.unwrap();
                            assert_eq!(page.offset, offset);
                            let mut bytes = Vec::new();
                            page.write_rows(&mut bytes);
                            let rows = parse(&bytes);
                            assert_eq!(rows.as_array().unwrap().len(), page.end - page.offset);
                            joined.extend(rows.as_array().unwrap().iter().cloned());
                            offset = page.end;
                            if !page.has_more() {
                                break;
                            }
                        }
                        assert_eq!(serde_json::Value::Array(joined), whole, "n={n} size={size}");
                    }
                    // Offsets past the end give an empty last page.
                    let p = shard.page(id, n + 10, 10).await.unwrap();
                    assert_eq!((p.offset, p.end, p.has_more()), (n, n, false));
                }
            }
        }
    });
    // Everything was delivered; the jobs are still retained (TTL 10 min).
    let s = engine.stats();
    assert_eq!(s.stored_jobs, 6);
    assert_eq!(s.completed_jobs, 6);
    assert_eq!(s.queued_jobs + s.running_jobs + s.active_queries, 0);
    assert!(s.execution.count >= 6 && s.queue_wait.count >= 6);
}

#[test]
fn unknown_ids_and_not_ready_and_failed_jobs_answer_with_the_right_errors() {
    run_one(config(2), |shard| async move {
        if shard.index() != 0 {
            return;
        }
        let unknown = uuid::Uuid::new_v4();
        assert_eq!(
            shard.status(unknown, None).await.unwrap_err(),
            JobError::NotFound
        );
        assert_eq!(
            shard.page(unknown, 0, 10).await.unwrap_err(),
            JobError::NotFound
        );
        assert_eq!(shard.cancel(unknown).await.unwrap_err(), JobError::NotFound);
        assert_eq!(shard.delete(unknown).await.unwrap_err(), JobError::NotFound);

        let bad = shard
            .submit("SELECT * FROM no_such_table".into(), None)
            .await
            .unwrap();
        let st = wait_terminal(&shard, bad.id).await;
        assert_eq!(st.status, Status::Failed);
        assert_eq!(st.error_code, Some("EXECUTION_ERROR"));
        assert!(
            st.error.as_deref().unwrap().contains("no_such_table"),
            "{st:?}"
        );
        match shard.page(bad.id, 0, 10).await.unwrap_err() {
            JobError::NotAvailable {
                status: Status::Failed,
                message,
            } => assert!(message.contains("no_such_table")),
            e => panic!("{e:?}"),
        }
        assert_eq!(JobError::NotReady(Status::Queued).code(), "QUERY_NOT_READY");

        let long = shard.submit(LONG_SQL.into(), None).await.unwrap();
        match shard.page(long.id, 0, 10).await.unwrap_err() {
            JobError::NotReady(s) => assert!(matches!(s, Status::Queued | Status::Running)),
            e => panic!("{e:?}"),
        }
        shard.delete(long.id).await.unwrap();

        match shard.execute("SELEKT 1").await.unwrap_err() {
            JobError::Execution(m) => assert!(m.to_lowercase().contains("syntax"), "{m}"),
            e => panic!("{e:?}"),
        }
    });
}

#[test]
fn cancel_of_a_running_query_frees_the_worker_promptly() {
    let engine = open(config(2));
    let e2 = engine.clone();
    run_shards(&engine, move |shard| {
        let engine = e2.clone();
        async move {
            if shard.index() != 1 {
                return;
            }
            let sub = shard.submit(LONG_SQL.into(), None).await.unwrap();
            assert!(eventually(Duration::from_secs(30), || engine.stats().running_jobs == 1).await);
            assert_eq!(engine.stats().active_queries, 1);
            // Give DuckDB time to be deep in the join.
            glommio::timer::sleep(Duration::from_millis(300)).await;
            let t = Instant::now();
            let st = shard.cancel(sub.id).await.unwrap();
            assert_eq!(st.status, Status::Canceled);
            assert_eq!(st.error_code, Some("CANCELED"));
            assert!(
                eventually(Duration::from_secs(30), || engine.stats().active_queries
                    == 0)
                .await
            );
            eprintln!("cancel -> active_queries 0 in {:?}", t.elapsed());
            let s = engine.stats();
            assert_eq!((s.running_jobs, s.queued_jobs, s.completed_jobs), (0, 0, 1));
            // Canceling again keeps the terminal status; the worker serves the next statement.
            assert_eq!(shard.cancel(sub.id).await.unwrap().status, Status::Canceled);
            let r = shard.execute("SELECT 42").await.unwrap();
            assert_eq!(rows_text(&r), "[[42]]");
            match shard.page(sub.id, 0, 1).await.unwrap_err() {
                JobError::NotAvailable {
                    status: Status::Canceled,
                    ..
                } => {}
                e => panic!("{e:?}"),
            }
        }
    });
}

#[test]
fn queued_jobs_are_dropped_before_they_start_and_delete_forgets() {
    let engine = open(config(1));
    let e2 = engine.clone();
    run_shards(&engine, move |shard| {
        let engine = e2.clone();
        async move {
            let running = shard.submit(LONG_SQL.into(), None).await.unwrap();
            let queued = shard
                .submit("CREATE TABLE must_not_exist AS SELECT 1".into(), None)
                .await
                .unwrap();
            assert!(eventually(Duration::from_secs(30), || engine.stats().running_jobs == 1).await);
            assert_eq!(
                shard.status(queued.id, None).await.unwrap().status,
                Status::Queued
            );
            assert_eq!(engine.stats().queued_jobs, 1);
            let c = shard.cancel(queued.id).await.unwrap();
            assert_eq!(c.status, Status::Canceled);
            assert_eq!(engine.stats().queued_jobs, 0);
            // Delete the running one: interrupted, and its id is gone.
            let d = shard.delete(running.id).await.unwrap();
            assert_eq!(d.status, Status::Canceled);
            assert_eq!(
                shard.status(running.id, None).await.unwrap_err(),
                JobError::NotFound
            );
            assert!(
                eventually(Duration::from_secs(30), || engine.stats().active_queries
                    == 0)
                .await
            );
            // The canceled queued job never ran.
            let r = shard
                .execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'must_not_exist'")
                .await
                .unwrap();
            assert_eq!(rows_text(&r), "[[0]]");
            shard.delete(queued.id).await.unwrap();
            let s = engine.stats();
            assert_eq!((s.stored_jobs, s.completed_jobs, s.running_jobs), (0, 0, 0));
        }
    });
}

#[test]
fn idempotent_submits_race_across_shards_and_yield_one_job() {
    let engine = open(config(4));
    let seen = Arc::new(Mutex::new(Vec::<(String, QueryId, bool)>::new()));
    let s2 = seen.clone();
    run_shards(&engine, move |shard| {
        let seen = s2.clone();
        async move {
            // Every shard submits the same 50 request ids, interleaved.
            let mut tasks = Vec::new();
            for k in 0..50 {
                let shard = shard.clone();
                let seen = seen.clone();
                tasks.push(glommio::spawn_local(async move {
                    let rid = format!("req-{k}");
                    let sub = shard
                        .submit(format!("SELECT {k} AS k"), Some(rid.clone()))
                        .await
                        .unwrap();
                    seen.lock().unwrap().push((rid, sub.id, sub.existing));
                }));
            }
            for t in tasks {
                t.await;
            }
        }
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 200);
    for k in 0..50 {
        let rid = format!("req-{k}");
        let mine: Vec<_> = seen.iter().filter(|(r, _, _)| *r == rid).collect();
        assert_eq!(mine.len(), 4);
        assert!(
            mine.iter().all(|(_, id, _)| *id == mine[0].1),
            "{rid}: {mine:?}"
        );
        assert_eq!(
            mine.iter().filter(|(_, _, existing)| !existing).count(),
            1,
            "{rid}: {mine:?}"
        );
    }
    assert_eq!(engine.stats().submitted_jobs, 50);
    assert_eq!(engine.stats().stored_jobs, 50);
    // Shut down: the tables' drop released every request id.
    assert_eq!(engine.retained_request_ids(), 0);
}

/// Each request id's job is created on whichever shard received its first
/// submit; the index finds it from every other shard, for a plain and for a
/// waiting submit, and a request id whose job left (delete, expiry) starts a
/// new job. The index holds one entry per retained job: many submit + delete
/// cycles on every shard leave it empty, and so does shutdown.
#[test]
fn request_ids_are_found_from_every_shard_and_leave_with_their_jobs() {
    const CYCLES: usize = 300;
    let engine = open(EngineConfig {
        result_ttl: Duration::from_millis(300),
        cleanup_interval: Duration::from_millis(50),
        ..config(2)
    });
    let ready = Arc::new(AtomicUsize::new(0));
    let e2 = engine.clone();
    run_shards(&engine, move |shard| {
        let engine = e2.clone();
        let ready = ready.clone();
        async move {
            let me = shard.index();
            let other = 1 - me;
            // Cycles: submit, a repeat (existing), delete, the same request id
            // again (a new job), delete.
            for k in 0..CYCLES {
                let rid = format!("cycle-{me}-{k}");
                let a = shard
                    .submit("SELECT 1".into(), Some(rid.clone()))
                    .await
                    .unwrap();
                assert!(!a.existing);
                let again = shard
                    .submit("SELECT 1".into(), Some(rid.clone()))
                    .await
                    .unwrap();
                assert_eq!((again.id, again.existing), (a.id, true));
                shard.delete(a.id).await.unwrap();
                let b = shard
                    .submit("SELECT 1".into(), Some(rid.clone()))
                    .await
                    .unwrap();
                assert!(
                    !b.existing && b.id != a.id,
                    "a request id whose job was deleted starts a new one"
                );
                shard.delete(b.id).await.unwrap();
            }
            // A job created here is found from the other shard by its request id.
            let waited = |rid: String| {
                let shard = shard.clone();
                async move {
                    let opts = RunOptions::default();
                    shard
                        .submit_and_wait(
                            "SELECT 42 AS v".into(),
                            Some(rid),
                            opts,
                            Duration::from_secs(10),
                            10,
                            false,
                        )
                        .await
                        .unwrap()
                }
            };
            let Waited::Ended { status, first, .. } = waited(format!("mine-{me}")).await else {
                panic!("SELECT 42 did not end within 10 s");
            };
            assert_eq!(status.status, Status::Succeeded);
            assert_eq!(first.expect("first page").end, 1);
            ready.fetch_add(1, Ordering::SeqCst);
            assert!(
                eventually(Duration::from_secs(30), || ready.load(Ordering::SeqCst)
                    == 2)
                .await
            );
            // The other shard's job, by its request id: a plain and a waiting repeat.
            let theirs = format!("mine-{other}");
            let plain = shard
                .submit("SELECT 42 AS v".into(), Some(theirs.clone()))
                .await
                .unwrap();
            assert!(plain.existing);
            assert_eq!(plain.status, Status::Succeeded);
            match waited(theirs).await {
                Waited::Ended { status, .. } => assert_eq!(status.id, plain.id),
                w => panic!("{w:?}"),
            }
            // Expiry (TTL 300 ms) takes the request ids with the jobs; then the
            // same request id starts a new job.
            assert!(
                eventually(Duration::from_secs(30), || engine.retained_request_ids()
                    == 0)
                .await
            );
            assert_eq!(engine.stats().stored_jobs, 0);
            ready.fetch_add(1, Ordering::SeqCst);
            assert!(
                eventually(Duration::from_secs(30), || ready.load(Ordering::SeqCst)
                    == 4)
                .await
            );
            let fresh = shard
                .submit("SELECT 42 AS v".into(), Some(format!("mine-{me}")))
                .await
                .unwrap();
            assert!(
                !fresh.existing,
                "a request id whose job expired starts a new one"
            );
            // Left retained for shutdown: the tables' drop releases them.
            shard
                .submit("SELECT 1".into(), Some(format!("kept-{me}")))
                .await
                .unwrap();
        }
    });
    assert_eq!(
        engine.retained_request_ids(),
        0,
        "shutdown released the request ids"
    );
}

#[test]
fn hundreds_of_jobs_over_shards_none_lost() {
    let engine = open(EngineConfig {
        max_queued_jobs: 0,
        ..config(3)
    });
    let results = Arc::new(Mutex::new(Vec::<(usize, i64)>::new()));
    let r2 = results.clone();
    run_shards(&engine, move |shard| {
        let results = r2.clone();
        async move {
            let base = shard.index() * 1000;
            let mut subs = Vec::new();
            for k in 0..150 {
                let n = base + k;
                // Half with request ids (routed to their owner shard), half local.
                let rid = (k % 2 == 0).then(|| format!("job-{n}"));
                let sub = shard
                    .submit(format!("SELECT {n}::BIGINT * 2 AS v"), rid)
                    .await
                    .unwrap();
                subs.push((n, sub.id));
            }
            for (n, id) in subs {
                let st = wait_terminal(&shard, id).await;
                assert_eq!(st.status, Status::Succeeded);
                let page = shard.page(id, 0, 10).await.unwrap();
                let mut b = Vec::new();
                page.write_rows(&mut b);
                let v = parse(&b);
                results.lock().unwrap().push((n, v[0][0].as_i64().unwrap()));
                shard.delete(id).await.unwrap();
            }
        }
    });
    let mut r = results.lock().unwrap().clone();
    r.sort();
    assert_eq!(r.len(), 450);
    for (n, v) in r {
        assert_eq!(v, n as i64 * 2);
    }
    let s = engine.stats();
    assert_eq!(
        (
            s.stored_jobs,
            s.completed_jobs,
            s.queued_jobs,
            s.running_jobs
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(s.submitted_jobs, 450);
}

#[test]
fn expiry_drops_terminal_jobs_after_the_ttl_and_counts_them() {
    let cfg = EngineConfig {
        result_ttl: Duration::from_millis(300),
        cleanup_interval: Duration::from_millis(50),
        ..config(2)
    };
    let engine = open(cfg);
    let e2 = engine.clone();
    run_shards(&engine, move |shard| {
        let engine = e2.clone();
        async move {
            if shard.index() != 0 {
                return;
            }
            let mut ids = Vec::new();
            for k in 0..20 {
                ids.push(
                    shard
                        .submit(format!("SELECT {k}"), Some(format!("ttl-{k}")))
                        .await
                        .unwrap()
                        .id,
                );
            }
            for id in &ids {
                assert_eq!(wait_terminal(&shard, *id).await.status, Status::Succeeded);
            }
            let t = Instant::now();
            assert!(eventually(Duration::from_secs(30), || engine.stats().stored_jobs == 0).await);
            assert!(
                t.elapsed() >= Duration::from_millis(100),
                "expired too early: {:?}",
                t.elapsed()
            );
            let s = engine.stats();
            assert_eq!(s.cleaned_jobs, 20);
            assert_eq!(s.completed_jobs, 0);
            for id in &ids {
                assert_eq!(
                    shard.status(*id, None).await.unwrap_err(),
                    JobError::NotFound
                );
            }
            // Request ids are forgotten with their jobs: a resubmit makes a new job.
            let again = shard
                .submit("SELECT 0".into(), Some("ttl-0".into()))
                .await
                .unwrap();
            assert!(!again.existing);
            assert!(!ids.contains(&again.id));
        }
    });
}

#[test]
fn result_too_large_fails_the_job_and_execute() {
    let cfg = EngineConfig {
        max_result_bytes: 10_000,
        ..config(1)
    };
    run_one(cfg, |shard| async move {
        let sub = shard
            .submit(
                "SELECT i, repeat('x', 100) FROM range(1000) t(i)".into(),
                None,
            )
            .await
            .unwrap();
        let st = wait_terminal(&shard, sub.id).await;
        assert_eq!(st.status, Status::Failed);
        assert_eq!(st.error_code, Some("RESULT_TOO_LARGE"));
        assert_eq!(
            shard
                .execute("SELECT repeat('y', 20000)")
                .await
                .unwrap_err(),
            JobError::ResultTooLarge { limit: 10_000 }
        );
        assert_eq!(
            JobError::ResultTooLarge { limit: 1 }.code(),
            "RESULT_TOO_LARGE"
        );
        // Small results still pass.
        assert_eq!(
            rows_text(&shard.execute("SELECT 1").await.unwrap()),
            "[[1]]"
        );
    });
}

#[test]
fn overload_is_refused_with_retry_after() {
    let cfg = EngineConfig {
        max_queued_jobs: 2,
        ..config(1)
    };
    let engine = open(cfg);
    let e2 = engine.clone();
    run_shards(&engine, move |shard| {
        let engine = e2.clone();
        async move {
            let blocker = shard.submit(LONG_SQL.into(), None).await.unwrap();
            assert!(eventually(Duration::from_secs(30), || engine.stats().running_jobs == 1).await);
            let a = shard
                .submit("SELECT 1".into(), Some("r".into()))
                .await
                .unwrap();
            let b = shard.submit("SELECT 2".into(), None).await.unwrap();
            match shard.submit("SELECT 3".into(), None).await.unwrap_err() {
                JobError::Overloaded { retry_after_s } => {
                    assert!((1..=60).contains(&retry_after_s))
                }
                e => panic!("{e:?}"),
            }
            assert!(matches!(
                shard.execute("SELECT 4").await,
                Err(JobError::Overloaded { .. })
            ));
            assert_eq!(engine.stats().rejected_overloaded, 2);
            // A resubmit of a known request id is not new work: it is answered.
            let again = shard
                .submit("SELECT 1".into(), Some("r".into()))
                .await
                .unwrap();
            assert_eq!(
                (again.id, again.existing, again.status),
                (a.id, true, Status::Queued)
            );
            shard.cancel(blocker.id).await.unwrap();
            for id in [a.id, b.id] {
                assert_eq!(wait_terminal(&shard, id).await.status, Status::Succeeded);
            }
            assert!(shard.submit("SELECT 6".into(), None).await.is_ok());
        }
    });
}

#[test]
fn long_poll_returns_as_soon_as_the_job_ends() {
    run_one(config(2), |shard| async move {
        if shard.index() != 1 {
            return;
        }
        // A job that takes a moment; the status call waits on the owner shard.
        let sub = shard
            .submit("SELECT count(*) FROM range(30000000)".into(), None)
            .await
            .unwrap();
        let t = Instant::now();
        let st = shard
            .status(sub.id, Some(Duration::from_secs(25)))
            .await
            .unwrap();
        let waited = t.elapsed();
        assert_eq!(st.status, Status::Succeeded, "{st:?}");
        assert!(
            waited < Duration::from_secs(20),
            "long-poll did not return early: {waited:?}"
        );
        // Without a terminal transition the wait runs out and reports the live status.
        let long = shard.submit(LONG_SQL.into(), None).await.unwrap();
        let t = Instant::now();
        let st = shard
            .status(long.id, Some(Duration::from_millis(200)))
            .await
            .unwrap();
        assert!(matches!(st.status, Status::Queued | Status::Running));
        assert!(t.elapsed() >= Duration::from_millis(150));
        // Deleting wakes a waiter, which then sees the id gone.
        let waiter = {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                shard.status(long.id, Some(Duration::from_secs(25))).await
            })
        };
        glommio::timer::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        shard.delete(long.id).await.unwrap();
        assert_eq!(waiter.await.unwrap_err(), JobError::NotFound);
        assert!(t.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn repeated_sql_uses_cached_statements_that_follow_schema_changes() {
    run_one(config(1), |shard| async move {
        shard.execute("CREATE TABLE t (a INTEGER)").await.unwrap();
        shard
            .execute("INSERT INTO t VALUES (1), (2)")
            .await
            .unwrap();
        for _ in 0..3 {
            let r = shard.execute("SELECT * FROM t ORDER BY a").await.unwrap();
            assert_eq!(rows_text(&r), "[[1],[2]]");
        }
        shard.execute("DROP TABLE t").await.unwrap();
        shard
            .execute("CREATE TABLE t (a INTEGER, b VARCHAR)")
            .await
            .unwrap();
        shard
            .execute("INSERT INTO t VALUES (3, 'x')")
            .await
            .unwrap();
        for _ in 0..2 {
            let r = shard.execute("SELECT * FROM t ORDER BY a").await.unwrap();
            assert_eq!(rows_text(&r), "[[3,\"x\"]]");
            assert_eq!(r.columns_json(), b"[\"a\",\"b\"]");
        }
        // Several statements in one text run on the fresh path (they cannot be
        // prepared), every time. DuckDB answers with the first statement that
        // returns rows; statements without rows (DDL, INSERT) do not count.
        for _ in 0..3 {
            let r = shard
                .execute("CREATE OR REPLACE TABLE m AS SELECT 1 AS x; INSERT INTO m VALUES (2); SELECT sum(x) AS s FROM m")
                .await
                .unwrap();
            assert_eq!(rows_text(&r), "[[3]]");
            let r = shard
                .execute("SELECT 1 AS one; SELECT 2 AS two")
                .await
                .unwrap();
            assert_eq!(
                (rows_text(&r).as_str(), r.columns_json()),
                ("[[1]]", &b"[\"one\"]"[..])
            );
        }
    });
}

#[test]
fn init_sql_runs_on_every_connection_and_its_errors_stop_open() {
    let err = Engine::open(EngineConfig {
        init_sql: Some("SELEKT nonsense".into()),
        ..config(2)
    })
    .err()
    .expect("open must fail");
    match &err {
        EngineError::InitSql { shard: 0, message } => {
            assert!(message.to_lowercase().contains("syntax"), "{message}")
        }
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains("init SQL"), "{err}");
    let err = Engine::open(EngineConfig {
        init_sql: Some("LOAD no_such_extension_xyz".into()),
        ..config(1)
    })
    .err();
    assert!(matches!(err, Some(EngineError::InitSql { .. })), "{err:?}");

    let cfg = EngineConfig {
        init_sql: Some(
            "SET VARIABLE greeting = 'hi'; CREATE TABLE IF NOT EXISTS shared_t AS SELECT 7 AS x;"
                .into(),
        ),
        ..config(2)
    };
    run_one(cfg, |shard| async move {
        // Every connection ran the init SQL (the variable is per connection).
        let r = shard
            .execute("SELECT getvariable('greeting'), (SELECT x FROM shared_t)")
            .await
            .unwrap();
        assert_eq!(rows_text(&r), "[[\"hi\",7]]");
    });
}

#[test]
fn database_files_and_settings_are_honoured() {
    let dir = std::env::temp_dir().join(format!("executor-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.duckdb");
    let cfg = EngineConfig {
        duckdb_path: Some(path.clone()),
        max_memory_gb: Some(0.5),
        duckdb_threads: Some(1),
        ..config(1)
    };
    let engine = open(cfg.clone());
    assert!(
        engine.duckdb_version().starts_with('v'),
        "{}",
        engine.duckdb_version()
    );
    run_shards(&engine, |shard| async move {
        shard
            .execute("CREATE TABLE kept AS SELECT 5 AS x")
            .await
            .unwrap();
        let r = shard
            .execute("SELECT current_setting('threads'), current_setting('max_memory')")
            .await
            .unwrap();
        let v = parse(rows_text(&r).as_bytes());
        assert_eq!(v[0][0], serde_json::json!(1));
        assert!(
            v[0][1].as_str().unwrap().contains("MiB") || v[0][1].as_str().unwrap().contains("MB"),
            "{v}"
        );
    });
    drop(engine);
    let engine = open(cfg);
    run_shards(&engine, |shard| async move {
        assert_eq!(
            rows_text(&shard.execute("SELECT x FROM kept").await.unwrap()),
            "[[5]]"
        );
    });
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(
        Engine::open(EngineConfig {
            duckdb_path: Some("/proc/nope/x.db".into()),
            ..config(1)
        }),
        Err(EngineError::Open(_))
    ));
}

#[test]
fn shutdown_fails_queued_work_and_interrupts_the_running_statement() {
    let engine = open(config(1));
    let e2 = engine.clone();
    run_shards(&engine, move |shard| {
        let engine = e2.clone();
        async move {
            let running = shard.submit(LONG_SQL.into(), None).await.unwrap();
            let queued = shard.submit("SELECT 1".into(), None).await.unwrap();
            assert!(eventually(Duration::from_secs(30), || engine.stats().running_jobs == 1).await);
            let exec = {
                let shard = shard.clone();
                glommio::spawn_local(async move { shard.execute("SELECT 2").await })
            };
            glommio::timer::sleep(Duration::from_millis(20)).await;
            shard.shutdown(Duration::from_secs(30)).await;
            assert_eq!(exec.await.unwrap_err(), JobError::ShuttingDown);
            let q = shard.status(queued.id, None).await.unwrap();
            assert_eq!(
                (q.status, q.error_code),
                (Status::Canceled, Some("SHUTTING_DOWN"))
            );
            let r = shard.status(running.id, None).await.unwrap();
            assert_eq!(r.status, Status::Canceled, "{r:?}");
            assert_eq!(engine.stats().active_queries, 0);
            assert_eq!(
                shard.submit("SELECT 3".into(), None).await.unwrap_err(),
                JobError::ShuttingDown
            );
            assert_eq!(
                shard.execute("SELECT 3").await.unwrap_err(),
                JobError::ShuttingDown
            );
        }
    });
}

#[test]
fn dropping_an_execute_future_interrupts_its_statement() {
    let engine = open(config(1));
    let e2 = engine.clone();
    run_shards(&engine, move |shard| {
        let engine = e2.clone();
        async move {
            let r = glommio::timer::timeout(Duration::from_millis(500), async {
                Ok(shard.execute(LONG_SQL).await)
            })
            .await;
            assert!(r.is_err(), "the long statement cannot finish in 500 ms");
            assert!(
                eventually(Duration::from_secs(30), || engine.stats().active_queries
                    == 0)
                .await
            );
            assert_eq!(
                rows_text(&shard.execute("SELECT 'next'").await.unwrap()),
                "[[\"next\"]]"
            );
        }
    });
}

#[test]
fn dropped_executes_handed_over_behind_each_other_are_skipped_or_interrupted() {
    let engine = open(config(1));
    let e2 = engine.clone();
    run_shards(&engine, move |shard| {
        let engine = e2.clone();
        async move {
            // The first runs, the second waits in the worker's pipeline, the
            // third in the shard's FIFO.
            let first = {
                let shard = shard.clone();
                glommio::spawn_local(async move { shard.execute(LONG_SQL).await })
            };
            let second = {
                let shard = shard.clone();
                glommio::spawn_local(async move { shard.execute(LONG_SQL).await })
            };
            let third = {
                let shard = shard.clone();
                glommio::spawn_local(async move { shard.execute("SELECT 3").await })
            };
            assert!(
                eventually(Duration::from_secs(30), || engine.stats().active_queries
                    >= 1)
                .await
            );
            glommio::timer::sleep(Duration::from_millis(100)).await;
            drop(second);
            drop(first);
            let r = glommio::timer::timeout(Duration::from_secs(60), async { Ok(third.await) })
                .await
                .expect("the third statement is answered once the first two are gone");
            assert_eq!(rows_text(&r.unwrap()), "[[3]]");
            assert!(
                eventually(Duration::from_secs(30), || engine.stats().active_queries
                    == 0)
                .await
            );
        }
    });
}
