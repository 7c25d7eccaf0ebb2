//! What the Flight SQL door holds between calls: queries whose `FlightInfo`
//! was answered and whose ticket is not yet read to its end, and prepared
//! statements (their text and bound parameter values), each owned by one
//! user.
//!
//! Owns per-user isolation (another user's ticket or handle is unknown, the
//! same answer as for one that never existed) and bounded memory: a query
//! holds a slot from before its rewrite until its ticket's stream ends or it
//! is canceled or expires, at most `MAX_JOBS_PER_USER` per user and
//! `MAX_JOBS_TOTAL` in all; a ticket not redeemed within `JOB_TTL` is
//! dropped (its engine work stopped), and so is a prepared statement
//! untouched that long; a user holds at most [`PREPARED_PER_USER`] prepared
//! statements. Dropping a held query stops its engine work (the agent's job
//! is canceled and deleted, local DuckDB interrupted). It never runs SQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use client::{ArrowBatches, Value};
use tokio::sync::oneshot;

use crate::query::audit::{Ending, CANCELED, EXPIRED};
use crate::query::{QueryError, Started};

/// Prepared statements one user may hold at once.
pub const PREPARED_PER_USER: usize = 256;

/// A query whose ticket has not been redeemed yet: its running result and
/// the batch already read (so the `FlightInfo` carried the schema and an
/// early engine error was that call's).
pub struct Ready {
    pub started: Started<ArrowBatches>,
    pub first: Option<RecordBatch>,
    pub slot: Slot,
}

enum State {
    Waiting(Box<Ready>),
    /// Being streamed by a `DoGet`: the sender stops it.
    Streaming(Option<oneshot::Sender<Ending>>),
}

struct Query {
    owner: String,
    touched: Instant,
    state: State,
}

/// A prepared statement: its text and the parameter values last bound.
#[derive(Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

struct Prepared {
    owner: String,
    touched: Instant,
    stmt: Statement,
}

#[derive(Default)]
struct Inner {
    queries: HashMap<String, Query>,
    prepared: HashMap<String, Prepared>,
    /// Slots held per user, and in all.
    slots: HashMap<String, usize>,
    total: usize,
}

/// See the module doc.
pub struct Held {
    inner: Mutex<Inner>,
    per_user: usize,
    total: usize,
    ttl: Duration,
}

/// One query's place under the caps; released when dropped.
pub struct Slot {
    held: Weak<Held>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(h) = self.held.upgrade() {
            let mut g = h.lock();
            g.total = g.total.saturating_sub(1);
            if let Some(n) = g.slots.get_mut(&self.user) {
                *n -= 1;
                if *n == 0 {
                    g.slots.remove(&self.user);
                }
            }
        }
    }
}

/// What a cancel found.
#[derive(Debug, PartialEq, Eq)]
pub enum Canceled {
    /// A waiting query was dropped, or a streaming one told to stop.
    Yes,
    /// No such query of this user (unknown, finished, expired).
    NotFound,
}

/// The end of a `DoGet`'s hold on a query: removes its entry when the
/// stream ends, however it ends.
pub struct Streaming {
    held: Weak<Held>,
    id: String,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if let Some(h) = self.held.upgrade() {
            h.lock().queries.remove(&self.id);
        }
    }
}

impl Held {
    pub fn new(per_user: usize, total: usize, ttl: Duration) -> Arc<Held> {
        Arc::new(Held {
            inner: Mutex::new(Inner::default()),
            per_user,
            total,
            ttl,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more query of `user`, or the cap's refusal.
    pub fn reserve(self: &Arc<Self>, user: &str) -> Result<Slot, QueryError> {
        let mut g = self.lock();
        let mine = g.slots.get(user).copied().unwrap_or(0);
        if mine >= self.per_user {
            return Err(QueryError::too_many(format!(
                "{user} holds {mine} queries (MAX_JOBS_PER_USER): read or cancel one first"
            )));
        }
        if g.total >= self.total {
            return Err(QueryError::too_many(
                "the gateway holds its maximum of queries (MAX_JOBS_TOTAL): try again later",
            ));
        }
        g.total += 1;
        *g.slots.entry(user.to_string()).or_default() += 1;
        Ok(Slot {
            held: Arc::downgrade(self),
            user: user.to_string(),
        })
    }

    /// Holds a query under `id` until its ticket is redeemed.
    pub fn hold(&self, id: &str, owner: &str, ready: Ready) {
        self.lock().queries.insert(
            id.to_string(),
            Query {
                owner: owner.to_string(),
                touched: Instant::now(),
                state: State::Waiting(Box::new(ready)),
            },
        );
    }

    /// Takes a waiting query of `owner` for streaming: its result, the
    /// receiver a cancel signals, and the guard that forgets it at the end.
    pub fn redeem(
        self: &Arc<Self>,
        id: &str,
        owner: &str,
    ) -> Option<(Box<Ready>, oneshot::Receiver<Ending>, Streaming)> {
        let mut g = self.lock();
        let q = g.queries.get_mut(id).filter(|q| q.owner == owner)?;
        if !matches!(q.state, State::Waiting(_)) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let State::Waiting(ready) = std::mem::replace(&mut q.state, State::Streaming(Some(tx)))
        else {
            return None;
        };
        Some((
            ready,
            rx,
            Streaming {
                held: Arc::downgrade(self),
                id: id.to_string(),
            },
        ))
    }

    /// Cancels `owner`'s query `id`: a waiting one is dropped (its engine
    /// work stops; its audit line says canceled), a streaming one is told
    /// to stop.
    pub fn cancel(&self, id: &str, owner: &str) -> Canceled {
        let dropped = {
            let mut g = self.lock();
            match g.queries.get_mut(id).filter(|q| q.owner == owner) {
                None => return Canceled::NotFound,
                Some(Query {
                    state: State::Streaming(tx),
                    ..
                }) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(CANCELED);
                    }
                    return Canceled::Yes;
                }
                Some(_) => g.queries.remove(id),
            }
        };
        if let Some(Query {
            state: State::Waiting(ready),
            ..
        }) = dropped
        {
            ready.started.audit.stop.set(CANCELED);
        }
        Canceled::Yes
    }

    /// Stores a prepared statement of `owner` under `handle`.
    pub fn prepare(&self, handle: &str, owner: &str, sql: String) -> Result<(), QueryError> {
        let mut g = self.lock();
        let mine = g.prepared.values().filter(|p| p.owner == owner).count();
        if mine >= PREPARED_PER_USER {
            return Err(QueryError::too_many(format!(
                "{owner} holds {mine} prepared statements: close one first"
            )));
        }
        g.prepared.insert(
            handle.to_string(),
            Prepared {
                owner: owner.to_string(),
                touched: Instant::now(),
                stmt: Statement {
                    sql,
                    params: Vec::new(),
                },
            },
        );
        Ok(())
    }

    /// `owner`'s prepared statement `handle` (touched: its TTL restarts).
    pub fn statement(&self, handle: &str, owner: &str) -> Option<Statement> {
        let mut g = self.lock();
        let p = g.prepared.get_mut(handle).filter(|p| p.owner == owner)?;
        p.touched = Instant::now();
        Some(p.stmt.clone())
    }

    /// Binds parameter values to `owner`'s prepared statement; false when
    /// there is no such statement.
    pub fn bind(&self, handle: &str, owner: &str, params: Vec<Value>) -> bool {
        let mut g = self.lock();
        match g.prepared.get_mut(handle).filter(|p| p.owner == owner) {
            Some(p) => {
                p.touched = Instant::now();
                p.stmt.params = params;
                true
            }
            None => false,
        }
    }

    /// Closes `owner`'s prepared statement (unknown handles too: closing is
    /// idempotent).
    pub fn close(&self, handle: &str, owner: &str) {
        let mut g = self.lock();
        if g.prepared.get(handle).is_some_and(|p| p.owner == owner) {
            g.prepared.remove(handle);
        }
    }

    /// Drops waiting queries and prepared statements untouched for the TTL.
    pub fn expire(&self) {
        let now = Instant::now();
        let expired: Vec<Query> = {
            let mut g = self.lock();
            let ttl = self.ttl;
            g.prepared
                .retain(|_, p| now.duration_since(p.touched) < ttl);
            let old: Vec<String> = g
                .queries
                .iter()
                .filter(|(_, q)| {
                    matches!(q.state, State::Waiting(_)) && now.duration_since(q.touched) >= ttl
                })
                .map(|(id, _)| id.clone())
                .collect();
            old.iter().filter_map(|id| g.queries.remove(id)).collect()
        };
        // Dropped outside the lock: a drop cancels engine work.
        for q in expired {
            if let State::Waiting(ready) = q.state {
                ready.started.audit.stop.set(EXPIRED);
            }
        }
    }

    /// Runs [`Self::expire`] on a timer while the registry lives.
    pub fn spawn_reaper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = (self.ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match weak.upgrade() {
                    Some(h) => h.expire(),
                    None => return,
                }
            }
        })
    }

    /// Queries held (waiting or streaming).
    pub fn len(&self) -> usize {
        self.lock().queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
