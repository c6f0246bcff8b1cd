//! The live feed: every change operators should see, numbered, kept for a while
//! so a client that reconnects with `Last-Event-ID` receives what it missed.
//!
//! Invariants:
//! - Ids increase monotonically, also across restarts: a process starts numbering
//!   at its start time in microseconds, so an id from before a restart is older
//!   than every id after it.
//! - An event is numbered, kept and broadcast under one lock: subscribers see
//!   events in id order, and an event is either in the backlog a reconnecting
//!   client reads or arrives on its subscription (it may be both; clients skip
//!   ids they have seen).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// How many events are kept for reconnecting clients.
const KEEP: usize = 10_000;

/// One event of the feed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// Monotonic id (the SSE `id:` field).
    pub id: u64,
    /// `finding.raised`, `finding.changed`, `finding.cleared`, `finding.acknowledged`,
    /// `finding.resolved`, `reload.ok`, `reload.failed` (the SSE `event:` field).
    pub kind: &'static str,
    /// The tenant it belongs to; `None`: everyone's (reloads).
    #[serde(skip)]
    pub tenant: Option<String>,
    /// The payload (a finding, a reload record).
    pub data: serde_json::Value,
    /// The payload as sent (serialized once, whatever the number of clients).
    #[serde(skip)]
    pub text: String,
}

struct Ring {
    next: u64,
    kept: VecDeque<Arc<Event>>,
}

/// The feed's numbering, backlog and subscribers.
pub struct Bus {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Bus {
    /// A bus numbering from `first` (use the start time in microseconds).
    pub fn new(first: u64) -> Bus {
        let (tx, _) = broadcast::channel(4096);
        Bus { ring: Mutex::new(Ring { next: first, kept: VecDeque::new() }), tx }
    }

    /// Numbers, keeps and broadcasts an event.
    pub fn publish(&self, kind: &'static str, tenant: Option<String>, data: serde_json::Value) -> u64 {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let id = ring.next;
        ring.next += 1;
        let text = data.to_string();
        let event = Arc::new(Event { id, kind, tenant, data, text });
        ring.kept.push_back(Arc::clone(&event));
        while ring.kept.len() > KEEP {
            ring.kept.pop_front();
        }
        // No subscriber is not an error: the event is kept for the next one.
        let _ = self.tx.send(event);
        id
    }

    /// A subscription to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The id of the last event published (one below the first id when none was).
    pub fn last_id(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).next - 1
    }

    /// The events after `last`, if every one of them is still kept; `None` when
    /// the gap is too old (or `last` is not an id of this feed): send a snapshot.
    pub fn since(&self, last: u64) -> Option<Vec<Arc<Event>>> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if last >= ring.next {
            return None;
        }
        let oldest_kept = ring.kept.front().map_or(ring.next, |e| e.id);
        if last + 1 < oldest_kept {
            return None;
        }
        Some(ring.kept.iter().filter(|e| e.id > last).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_clients_get_what_they_missed_or_a_snapshot() {
        let bus = Bus::new(100);
        assert_eq!(bus.last_id(), 99);
        // Nothing published yet: a client that saw nothing of this feed needs nothing more.
        assert_eq!(bus.since(99).map(|v| v.len()), Some(0));
        let ids: Vec<u64> = (0..3).map(|i| bus.publish("reload.ok", None, serde_json::json!(i))).collect();
        assert_eq!(ids, vec![100, 101, 102]);
        let missed: Vec<u64> = bus.since(100).unwrap_or_default().iter().map(|e| e.id).collect();
        assert_eq!(missed, vec![101, 102]);
        // An id from another process (after this one's last): snapshot.
        assert!(bus.since(500).is_none());
        // An id before everything kept: snapshot.
        for _ in 0..KEEP {
            bus.publish("reload.ok", None, serde_json::Value::Null);
        }
        assert!(bus.since(101).is_none());
        assert_eq!(bus.since(bus.last_id() - 1).map(|v| v.len()), Some(1));
    }

    #[test]
    fn subscribers_receive_in_id_order() {
        let bus = Bus::new(1);
        let mut rx = bus.subscribe();
        bus.publish("a", None, serde_json::Value::Null);
        bus.publish("b", Some("T1".into()), serde_json::Value::Null);
        let got: Vec<(u64, &str)> = (0..2).filter_map(|_| rx.try_recv().ok()).map(|e| (e.id, e.kind)).collect();
        assert_eq!(got, vec![(1, "a"), (2, "b")]);
    }
}
