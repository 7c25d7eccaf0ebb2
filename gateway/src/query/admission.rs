//! The admission queue: how many queries this gateway runs at once on each
//! agent (`AGENT_MAX_RUNNING`), and the bounded, per-user fair queue a query
//! waits in when its agent is full, instead of being refused at once.
//!
//! Owns the slots (one per query running on an agent, held by the query's
//! audit record to its last row), the waiters of each agent, their order
//! (round robin over the users waiting, first come first served within a
//! user: a user with many queries waiting gets a turn like a user with one),
//! the queue's bounds (`QUEUE_MAX` waiters, `QUEUE_TIMEOUT` each) and its
//! figures (depth, waits, timeouts). A freed slot is handed to the next
//! waiter directly, never put back for whoever comes next, so a newcomer
//! cannot overtake the queue. It never blocks a thread (waiting is a future)
//! and never runs or routes a query: the query path asks it for a slot on
//! the agent the resolver chose.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Why a query was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `QUEUE_MAX` queries wait already.
    QueueFull,
    /// It waited its whole allowance (`QUEUE_TIMEOUT`, or what was left of
    /// the query's own deadline).
    Timeout(Duration),
}

/// The queue's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Queries run at once on one agent from this gateway (0: no limit, no queue).
    pub max_running: usize,
    /// Queries waiting at once, all agents.
    pub max_waiting: usize,
    /// Longest one query waits.
    pub timeout: Duration,
}

/// Slots and waiters of every agent. Share it as `Arc<Admission>`.
pub struct Admission {
    settings: AdmissionSettings,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    agents: HashMap<String, Agent>,
    waiting: usize,
    next_ticket: u64,
    /// Figures for `/metrics`.
    waited: crate::query::metrics::Histogram,
    timeouts: u64,
    refused_full: u64,
}

/// One agent's slots in use and its waiters.
#[derive(Default)]
struct Agent {
    running: usize,
    /// Users with a waiter, in turn order.
    turns: VecDeque<String>,
    /// Each user's waiters, first come first.
    queues: HashMap<String, VecDeque<Waiter>>,
}

struct Waiter {
    ticket: u64,
    handoff: oneshot::Sender<Slot>,
}

/// One query's place on an agent; freeing it hands it to the next waiter.
pub struct Slot {
    admission: Arc<Admission>,
    endpoint: String,
    /// False once handed on (the drop then does nothing).
    held: bool,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            self.held = false;
            self.admission.release(&self.endpoint);
        }
    }
}

/// Where one query waits (its agent, its user, its ticket) while it does,
/// for [`Admission::position`]; empty otherwise.
#[derive(Debug, Default)]
pub struct Place(Mutex<Option<(String, String, u64)>>);

impl Place {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, String, u64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the queue holds now, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct QueueFigures {
    pub waiting: usize,
    pub running: usize,
    pub waited: crate::query::metrics::Histogram,
    pub timeouts: u64,
    pub refused_full: u64,
}

impl Admission {
    pub fn new(settings: AdmissionSettings) -> Arc<Admission> {
        Arc::new(Admission {
            settings,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot on `endpoint` for a query of `user`: at once when the agent has
    /// room and nobody waits for it; otherwise in the queue, until a slot is
    /// handed over or `until` (the earlier of `QUEUE_TIMEOUT` from now and
    /// the query's deadline) passes. `None` when there is no limit.
    pub async fn admit(
        self: &Arc<Self>,
        endpoint: &str,
        user: &str,
        deadline: Instant,
        place: Option<&Place>,
    ) -> Result<Option<Slot>, Refused> {
        if self.settings.max_running == 0 {
            return Ok(None);
        }
        let started = Instant::now();
        let until = deadline.min(started + self.settings.timeout);
        let rx = {
            let mut st = self.lock();
            let max_waiting = self.settings.max_waiting;
            let max_running = self.settings.max_running;
            let waiting_total = st.waiting;
            let ticket = st.next_ticket;
            let agent = st.agents.entry(endpoint.to_string()).or_default();
            if agent.running < max_running && agent.turns.is_empty() {
                agent.running += 1;
                return Ok(Some(self.slot(endpoint)));
            }
            if waiting_total >= max_waiting {
                st.refused_full += 1;
                return Err(Refused::QueueFull);
            }
            let (tx, rx) = oneshot::channel();
            let queue = agent.queues.entry(user.to_string()).or_default();
            if queue.is_empty() {
                agent.turns.push_back(user.to_string());
            }
            queue.push_back(Waiter {
                ticket,
                handoff: tx,
            });
            st.next_ticket += 1;
            st.waiting += 1;
            (rx, ticket)
        };
        let (rx, ticket) = rx;
        // Leaves the queue however this future ends (timeout, or the caller
        // dropping it); a slot handed over in that moment comes back through
        // its own drop.
        let _queued = Queued {
            admission: self,
            endpoint,
            user,
            ticket,
            place,
        };
        if let Some(p) = place {
            *p.lock() = Some((endpoint.to_string(), user.to_string(), ticket));
        }
        match tokio::time::timeout_at(until.into(), rx).await {
            Ok(Ok(slot)) => {
                self.lock().waited.observe(started.elapsed().as_secs_f64());
                Ok(Some(slot))
            }
            _ => {
                self.lock().timeouts += 1;
                Err(Refused::Timeout(started.elapsed()))
            }
        }
    }

    fn slot(self: &Arc<Self>, endpoint: &str) -> Slot {
        Slot {
            admission: self.clone(),
            endpoint: endpoint.to_string(),
            held: true,
        }
    }

    /// A slot of `endpoint` was freed: handed to the next waiter in turn,
    /// else the agent has one more free.
    fn release(self: &Arc<Self>, endpoint: &str) {
        loop {
            let next = {
                let mut st = self.lock();
                let Some(agent) = st.agents.get_mut(endpoint) else {
                    return;
                };
                match next_waiter(agent) {
                    Some(w) => {
                        st.waiting -= 1;
                        w
                    }
                    None => {
                        agent.running = agent.running.saturating_sub(1);
                        return;
                    }
                }
            };
            // Sent outside the lock: a waiter that is gone gives the slot
            // back, and the next one is tried.
            let slot = self.slot(endpoint);
            match next.handoff.send(slot) {
                Ok(()) => return,
                Err(mut slot) => slot.held = false,
            }
        }
    }

    /// Where the query waiting at `place` stands: 1 for the next to get a
    /// slot of its agent, counting the turns of every user before it; `None`
    /// when it is not waiting.
    pub fn position(&self, place: &Place) -> Option<usize> {
        let (endpoint, user, ticket) = place.lock().clone()?;
        let st = self.lock();
        let agent = st.agents.get(&endpoint)?;
        let queue = agent.queues.get(&user)?;
        let k = queue.iter().position(|w| w.ticket == ticket)?;
        let turn = agent.turns.iter().position(|u| *u == user)?;
        // Served in rounds of one per user in turn order: the k rounds before
        // this one, then the users ahead of it in its own round.
        let mut ahead = 0;
        for (i, u) in agent.turns.iter().enumerate() {
            let n = agent.queues.get(u).map_or(0, VecDeque::len);
            ahead += n.min(k);
            if i < turn && n > k {
                ahead += 1;
            }
        }
        Some(ahead + 1)
    }

    /// The queue now.
    pub fn figures(&self) -> QueueFigures {
        let st = self.lock();
        QueueFigures {
            waiting: st.waiting,
            running: st.agents.values().map(|a| a.running).sum(),
            waited: st.waited.clone(),
            timeouts: st.timeouts,
            refused_full: st.refused_full,
        }
    }
}

/// A waiter's place, taken out of the queue on drop (a no-op once the
/// releaser took it out to hand it a slot).
struct Queued<'a> {
    admission: &'a Admission,
    endpoint: &'a str,
    user: &'a str,
    ticket: u64,
    place: Option<&'a Place>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.place {
            *p.lock() = None;
        }
        let mut st = self.admission.lock();
        if let Some(agent) = st.agents.get_mut(self.endpoint) {
            if remove_waiter(agent, self.user, self.ticket) {
                st.waiting -= 1;
            }
        }
    }
}

/// The next waiter of `agent` in turn: the first of the user whose turn it
/// is, that user then going to the back of the turns.
fn next_waiter(agent: &mut Agent) -> Option<Waiter> {
    while let Some(user) = agent.turns.pop_front() {
        let Some(queue) = agent.queues.get_mut(&user) else {
            continue;
        };
        let Some(w) = queue.pop_front() else {
            agent.queues.remove(&user);
            continue;
        };
        if queue.is_empty() {
            agent.queues.remove(&user);
        } else {
            agent.turns.push_back(user);
        }
        return Some(w);
    }
    None
}

/// Takes `ticket` of `user` out of `agent`'s queue; whether it was there.
fn remove_waiter(agent: &mut Agent, user: &str, ticket: u64) -> bool {
    let Some(queue) = agent.queues.get_mut(user) else {
        return false;
    };
    let before = queue.len();
    queue.retain(|w| w.ticket != ticket);
    let removed = queue.len() < before;
    if queue.is_empty() {
        agent.queues.remove(user);
        agent.turns.retain(|u| u != user);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_running: usize, max_waiting: usize, timeout_ms: u64) -> Arc<Admission> {
        Admission::new(AdmissionSettings {
            max_running,
            max_waiting,
            timeout: Duration::from_millis(timeout_ms),
        })
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_users_in_turn_not_to_a_newcomer() {
        let a = admission(1, 100, 10_000);
        let first = a.admit("e", "heavy", far(), None).await.unwrap().unwrap();
        // heavy queues three, light one, behind them.
        let mut waiting = Vec::new();
        for (i, user) in ["heavy", "heavy", "heavy", "light"].into_iter().enumerate() {
            let a = a.clone();
            waiting.push((
                i,
                user,
                tokio::spawn(async move { a.admit("e", user, far(), None).await }),
            ));
            tokio::task::yield_now().await;
        }
        while a.figures().waiting < 4 {
            tokio::task::yield_now().await;
        }
        // A newcomer cannot overtake: the agent is full and has waiters.
        let a2 = a.clone();
        let newcomer = tokio::spawn(async move { a2.admit("e", "heavy", far(), None).await });
        while a.figures().waiting < 5 {
            tokio::task::yield_now().await;
        }
        // Positions follow the turns: heavy's first, light's, heavy's second...
        let place = Arc::new(Place::default());
        let (a3, p3) = (a.clone(), place.clone());
        let probe = tokio::spawn(async move { a3.admit("e", "light", far(), Some(&p3)).await });
        while a.position(&place).is_none() {
            tokio::task::yield_now().await;
        }
        // light's second waiter: after heavy 1, light 1, heavy 2 (round two).
        assert_eq!(a.position(&place), Some(4));
        probe.abort();
        let _ = probe.await;
        assert_eq!(a.position(&place), None);
        // Freed one by one: heavy's first, then light (its turn), then heavy.
        let mut order = Vec::new();
        let mut slot = first;
        let mut handles: Vec<_> = waiting.into_iter().map(|(_, u, h)| (u, h)).collect();
        handles.push(("heavy-newcomer", newcomer));
        for _ in 0..5 {
            drop(slot);
            // Find the task that got it.
            let mut got = None;
            while got.is_none() {
                tokio::task::yield_now().await;
                for (i, (u, h)) in handles.iter().enumerate() {
                    if h.is_finished() {
                        got = Some((i, *u));
                        break;
                    }
                }
            }
            let (i, u) = got.unwrap();
            let (_, h) = handles.remove(i);
            slot = h.await.unwrap().unwrap().unwrap();
            order.push(u);
        }
        assert_eq!(
            order,
            vec!["heavy", "light", "heavy", "heavy", "heavy-newcomer"]
        );
        drop(slot);
        let f = a.figures();
        assert_eq!((f.waiting, f.running), (0, 0));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_length_and_in_time() {
        let a = admission(1, 1, 50);
        let _s = a.admit("e", "u", far(), None).await.unwrap().unwrap();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.admit("e", "u", far(), None).await });
        while a.figures().waiting < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            a.admit("e", "v", far(), None).await.unwrap_err(),
            Refused::QueueFull
        );
        assert!(matches!(waiter.await.unwrap(), Err(Refused::Timeout(_))));
        let f = a.figures();
        assert_eq!(
            (f.waiting, f.running, f.timeouts, f.refused_full),
            (0, 1, 1, 1)
        );
        // Another agent is not held up by this one.
        assert!(a.admit("other", "u", far(), None).await.unwrap().is_some());
        // No limit: no slot, no queue.
        assert!(admission(0, 1, 1)
            .admit("e", "u", far(), None)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_waiter_that_left_goes_to_the_next() {
        let a = admission(1, 10, 10_000);
        let s = a.admit("e", "u", far(), None).await.unwrap().unwrap();
        let a2 = a.clone();
        let gone = tokio::spawn(async move { a2.admit("e", "u", far(), None).await });
        let a3 = a.clone();
        let next = tokio::spawn(async move { a3.admit("e", "v", far(), None).await });
        while a.figures().waiting < 2 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop(s);
        let got = next.await.unwrap().unwrap().unwrap();
        assert_eq!(a.figures().running, 1);
        drop(got);
        assert_eq!(a.figures().running, 0);
    }
}
