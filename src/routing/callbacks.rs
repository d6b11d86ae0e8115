//! Listener counts from the relays themselves: Icecast's URL-auth
//! callbacks (`listener_add` / `listener_remove`).
//!
//! A relay with a callback token reports every listener as it connects and
//! leaves, so its counts are exact between polls: a [`Tally`] per mount
//! and per server holds them, read lock-free by selection. Each relay's
//! [`CallbackBook`] remembers which client is on which mount, so a
//! `listener_remove` (which names only the client) frees the right slot.
//!
//! Callbacks get lost (a relay restart drops its `listener_remove` calls,
//! listeners from before the token was set were never reported), so each
//! poll still corrects the tallies to what the relay says (`reconcile`).
//! The poll and the callbacks do not see the same instant: a listener
//! reported just before the poll may not be in its count yet (Icecast-KH
//! counts it up to a few hundred milliseconds later), one who left after
//! it still is. The book keeps the last minute of changes to allow for
//! both; the difference that remains is the drift, reported in
//! `/api/status` and `/metrics`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::snapshot::MountCounters;

/// Changes older than this are not needed to reconcile a poll.
const EVENTS_KEPT_MS: i64 = 60_000;

/// Listeners of one mount (or of a whole relay) as its callbacks report
/// them, corrected by polls.
#[derive(Debug, Default)]
pub struct Tally {
    /// Clients in the book on this mount.
    entries: AtomicI64,
    /// The polls' correction: listeners the relay has that no callback
    /// reported (positive), or reported ones it no longer has (negative).
    offset: AtomicI64,
    /// What the last reconciled poll found beyond what timing explains.
    drift: AtomicI64,
    /// The poll last folded in (ms), so each is folded in once.
    poll_ms: AtomicI64,
}

impl Tally {
    /// Listeners now.
    pub fn listeners(&self) -> u64 {
        u64::try_from(self.signed()).unwrap_or(0)
    }

    fn signed(&self) -> i64 {
        self.entries.load(Ordering::Acquire) + self.offset.load(Ordering::Acquire)
    }

    /// Listeners the last poll counted minus those the callbacks
    /// accounted for (0: they agreed).
    pub fn drift(&self) -> i64 {
        self.drift.load(Ordering::Relaxed)
    }

    /// Whether a poll was ever folded in.
    pub fn reconciled(&self) -> bool {
        self.poll_ms.load(Ordering::Relaxed) > 0
    }

    fn bump(&self, by: i64) {
        self.entries.fetch_add(by, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Client {
    /// The mount's id and counters.
    mount: (i64, Arc<MountCounters>),
}

/// One change, for reconciling a poll that ran while it happened.
#[derive(Debug, Clone, Copy)]
struct Event {
    at_ms: i64,
    /// The mount's database id.
    mount: i64,
    added: bool,
}

#[derive(Debug, Default)]
struct Book {
    clients: HashMap<u64, Client>,
    events: VecDeque<Event>,
}

/// Which client is on which mount of one relay; see the module comment.
#[derive(Debug, Default)]
pub struct CallbackBook {
    book: Mutex<Book>,
    /// When the relay last called back (ms; 0: never).
    last_ms: AtomicI64,
}

/// A mount as a callback names it: its database id and counters.
#[derive(Clone, Copy)]
pub struct MountRef<'a> {
    pub id: i64,
    pub counters: &'a Arc<MountCounters>,
}

impl CallbackBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the relay last called back (ms since the epoch, 0: never).
    pub fn last_callback_ms(&self) -> i64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    /// Clients the book holds (for tests and the status page).
    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    /// `client` connected to `mount`. A client id already in the book moves (Icecast numbers clients
    /// afresh after a restart, so an old id may come back).
    pub fn add(&self, server: &Tally, client: u64, mount: MountRef<'_>, now_ms: i64) {
        self.last_ms.store(now_ms, Ordering::Relaxed);
        let mut book = self.lock();
        if let Some(old) = book.clients.remove(&client) {
            forget(&mut book, server, old, now_ms);
        }
        server.bump(1);
        mount.counters.callbacks.bump(1);
        book.clients.insert(
            client,
            Client {
                mount: (mount.id, mount.counters.clone()),
            },
        );
        note(&mut book, mount.id, true, now_ms);
    }

    /// `client` left; `false` if the book did not know it.
    pub fn remove(&self, server: &Tally, client: u64, now_ms: i64) -> bool {
        self.last_ms.store(now_ms, Ordering::Relaxed);
        let mut book = self.lock();
        match book.clients.remove(&client) {
            Some(old) => {
                forget(&mut book, server, old, now_ms);
                true
            }
            None => false,
        }
    }

    /// Folds in a poll that started at `poll_ms` and found `polled`
    /// listeners on the mount with id `mount` (0: the whole relay, with
    /// `tally` the server's). Changes within `settle_ms` before the poll
    /// may or may not be in its count; later ones are not.
    pub fn reconcile(&self, tally: &Tally, mount: i64, polled: u64, poll_ms: i64, settle_ms: i64) {
        let book = self.lock();
        if tally.poll_ms.load(Ordering::Acquire) >= poll_ms {
            return;
        }
        tally.poll_ms.store(poll_ms, Ordering::Release);
        let (mut added_after, mut removed_after, mut maybe) = (0i64, 0i64, 0i64);
        for e in book
            .events
            .iter()
            .filter(|e| mount == 0 || e.mount == mount)
        {
            match (e.added, e.at_ms >= poll_ms) {
                (true, true) => added_after += 1,
                (false, true) => removed_after += 1,
                (true, false) if e.at_ms >= poll_ms - settle_ms => maybe += 1,
                _ => {}
            }
        }
        // What the relay should have counted at the poll, at most and at
        // least (listeners reported in the settle window may be missing).
        let most = tally.signed() - added_after + removed_after;
        let least = most - maybe;
        let polled = i64::try_from(polled).unwrap_or(i64::MAX);
        let correction = if polled > most {
            polled - most
        } else if polled < least {
            polled - least
        } else {
            0
        };
        tally.offset.fetch_add(correction, Ordering::AcqRel);
        tally.drift.store(correction, Ordering::Relaxed);
        drop(book);
    }
}

fn forget(book: &mut Book, server: &Tally, old: Client, now_ms: i64) {
    server.bump(-1);
    let (id, m) = &old.mount;
    m.callbacks.bump(-1);
    note(book, *id, false, now_ms);
}

fn note(book: &mut Book, mount: i64, added: bool, now_ms: i64) {
    while book
        .events
        .front()
        .is_some_and(|e| e.at_ms < now_ms - EVENTS_KEPT_MS)
    {
        book.events.pop_front();
    }
    book.events.push_back(Event {
        at_ms: now_ms,
        mount,
        added,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(_id: i64) -> Arc<MountCounters> {
        Arc::new(MountCounters::default())
    }

    #[test]
    fn adds_and_removes_count_on_the_mount_and_the_relay() {
        let (book, server, m) = (CallbackBook::default(), Tally::default(), mount(7));
        let r = MountRef {
            id: 7,
            counters: &m,
        };
        book.add(&server, 1, r, 1_000);
        book.add(&server, 2, r, 1_001);
        assert_eq!(m.callbacks.listeners(), 2);
        assert_eq!(server.listeners(), 2);
        assert!(book.remove(&server, 1, 1_003));
        assert!(
            !book.remove(&server, 1, 1_004),
            "a second remove is nothing"
        );
        assert_eq!(m.callbacks.listeners(), 1);
        assert_eq!(server.listeners(), 1);
    }

    #[test]
    fn a_reused_client_id_moves_instead_of_counting_twice() {
        let (book, server, a, b) = (
            CallbackBook::default(),
            Tally::default(),
            mount(1),
            mount(2),
        );
        book.add(
            &server,
            5,
            MountRef {
                id: 1,
                counters: &a,
            },
            10,
        );
        book.add(
            &server,
            5,
            MountRef {
                id: 2,
                counters: &b,
            },
            20,
        );
        assert_eq!((a.callbacks.listeners(), b.callbacks.listeners()), (0, 1));
        assert_eq!(server.listeners(), 1);
    }

    #[test]
    fn a_poll_corrects_lost_callbacks_both_ways() {
        let (book, server, m) = (CallbackBook::default(), Tally::default(), mount(3));
        let r = MountRef {
            id: 3,
            counters: &m,
        };
        for c in 0..5 {
            book.add(&server, c, r, 1_000);
        }
        // The relay restarted: it has 2, the book 5 (removes were lost).
        book.reconcile(&m.callbacks, 3, 2, 100_000, 5_000);
        assert_eq!(m.callbacks.listeners(), 2);
        assert_eq!(m.callbacks.drift(), -3);
        // Listeners nobody reported (callbacks set up on the relay late).
        book.reconcile(&m.callbacks, 3, 6, 115_000, 5_000);
        assert_eq!(m.callbacks.listeners(), 6);
        assert_eq!(m.callbacks.drift(), 4);
        // The same poll again changes nothing.
        book.reconcile(&m.callbacks, 3, 0, 115_000, 5_000);
        assert_eq!(m.callbacks.listeners(), 6);
    }

    #[test]
    fn a_poll_that_ran_while_listeners_came_and_went_is_no_drift() {
        let (book, server, m) = (CallbackBook::default(), Tally::default(), mount(3));
        let r = MountRef {
            id: 3,
            counters: &m,
        };
        for c in 0..4 {
            book.add(&server, c, r, 10_000);
        }
        // Poll at 20.0 s: one arrived 0.2 s before (KH counts it later),
        // one after; one left after the poll (still in its count).
        book.add(&server, 10, r, 19_800);
        book.add(&server, 11, r, 20_100);
        book.remove(&server, 0, 20_200);
        // The relay counted the 4 and not the one at 19.8 s: 4, while the
        // book has 5 now. No correction.
        book.reconcile(&m.callbacks, 3, 4, 20_000, 5_000);
        assert_eq!(m.callbacks.drift(), 0);
        assert_eq!(m.callbacks.listeners(), 5);
        // Nor if it had counted the one at 19.8 s already.
        let m2 = mount(4);
        let r2 = MountRef {
            id: 4,
            counters: &m2,
        };
        let book2 = CallbackBook::default();
        book2.add(&server, 1, r2, 19_800);
        book2.reconcile(&m2.callbacks, 4, 1, 20_000, 5_000);
        assert_eq!(m2.callbacks.drift(), 0);
    }
}
