//! Stage 5, state: what Vigil keeps between runs in the state database (a DuckDB
//! file): the findings store with its lifecycle and provenance, the incremental
//! baselines, and the schema versions both live under.
//!
//! Invariant: every module here attaches the state file through
//! [`migrations::upgrade`], so it only ever reads and writes the schema this
//! binary knows.

pub mod baseline;
pub mod ingest;
pub mod migrations;
pub mod outbox;
pub mod silences;
pub mod store;

/// A lock that serves its waiters in the order they came (a ticket lock). The state and
/// signals databases are each used under one: with `std::sync::Mutex`, a tick that
/// takes the lock again and again (back-to-back ticks on a busy machine) could starve an
/// operator's request for many minutes, as a 1,000-site soak showed.
pub struct FairLock {
    /// (next ticket to hand out, ticket being served)
    tickets: std::sync::Mutex<(u64, u64)>,
    turn: std::sync::Condvar,
}

/// Holds a [`FairLock`] until dropped.
pub struct FairGuard<'a>(&'a FairLock);

impl FairLock {
    /// An unlocked lock.
    pub const fn new() -> FairLock {
        FairLock { tickets: std::sync::Mutex::new((0, 0)), turn: std::sync::Condvar::new() }
    }

    /// Waits for the turn of a new ticket. (A panic while holding the guard still
    /// releases it, on unwinding.)
    pub fn lock(&self) -> FairGuard<'_> {
        let mut t = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        let mine = t.0;
        t.0 += 1;
        while t.1 != mine {
            t = self.turn.wait(t).unwrap_or_else(|p| p.into_inner());
        }
        FairGuard(self)
    }
}

impl Default for FairLock {
    fn default() -> Self {
        FairLock::new()
    }
}

impl Drop for FairGuard<'_> {
    fn drop(&mut self) {
        let mut t = self.0.tickets.lock().unwrap_or_else(|p| p.into_inner());
        t.1 += 1;
        drop(t);
        self.0.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::FairLock;
    use std::sync::Arc;

    #[test]
    fn waiters_are_served_in_the_order_they_came() {
        let lock = Arc::new(FairLock::new());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = lock.lock();
        let mut threads = Vec::new();
        for i in 0..4u64 {
            let (mine, order) = (Arc::clone(&lock), Arc::clone(&order));
            threads.push(std::thread::spawn(move || {
                let _g = mine.lock();
                order.lock().expect("order").push(i);
            }));
            // Each waiter has taken its ticket before the next one starts.
            while lock.tickets.lock().expect("tickets").0 < i + 2 {
                std::thread::yield_now();
            }
        }
        drop(first);
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3]);
    }
}
