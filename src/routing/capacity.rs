//! Capacity, in one seam: a listener gets a slot here or a reason why not.
//!
//! Selection reserves a slot on the mount and its server in their ledgers
//! ([`Reservation`]); the reservation is taken back when it is dropped
//! uncommitted, so no path can forget to. With a cluster, the slot is kept
//! only if the [`SharedGate`] (the cluster's shared counts, implemented in
//! `cluster`) has room too; a refused mount counts as full for the rest of
//! the second, so the next choice goes elsewhere without asking again.
//! The web layer asks [`redirect`] or [`playlist`] and never touches a
//! ledger.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use super::callbacks::MountRef;
use super::rules::Want;
use super::select;
use super::snapshot::{MountEntry, Snapshot, StreamEntry};
use super::tokens::{self, Signer};
use crate::domain::{ClientGeo, Clock};

/// A slot held on a mount and its server; released on drop unless
/// [`Reservation::commit`]ted.
#[derive(Debug)]
#[must_use = "a reservation is released when dropped"]
pub struct Reservation<'a> {
    snap: &'a Snapshot,
    mount: usize,
    now_s: u64,
}

impl<'a> Reservation<'a> {
    /// Reserves a slot on the mount and its server unless that would
    /// exceed a limit; checking after the increment makes concurrent
    /// reservations safe.
    pub(crate) fn try_new(
        snap: &'a Snapshot,
        mount: usize,
        now_s: u64,
        ttl_s: u64,
    ) -> Option<Self> {
        let m = &snap.mounts[mount];
        let s = &snap.servers[m.server];
        let seen = s.last_success_at.unwrap_or(i64::MIN);
        m.counters.ledger.add(now_s);
        s.counters.ledger.add(now_s);
        // From here on, dropping `held` takes both back.
        let held = Reservation { snap, mount, now_s };
        let within = |max: Option<u32>, used: u64| max.is_none_or(|max| used <= u64::from(max));
        let mount_ok = within(
            m.max,
            m.listeners_now() + m.counters.ledger.count_seen(now_s, ttl_s, seen),
        );
        let server_ok = within(
            s.max_listeners,
            s.listeners_now() + s.counters.ledger.count_seen(now_s, ttl_s, seen),
        );
        // This reservation is charged already: the budget must hold it.
        let budget_ok = s
            .bandwidth
            .as_ref()
            .is_none_or(|bw| bw.used_kbps(now_s, ttl_s, seen) <= bw.budget_kbps);
        (mount_ok && server_ok && budget_ok).then_some(held)
    }

    /// Index of the mount in `Snapshot::mounts`.
    pub fn mount(&self) -> usize {
        self.mount
    }

    /// Keeps the slot: the listener is sent there. Counts the redirect on
    /// the mount and its server.
    pub fn commit(self) -> Slot {
        self.keep(None)
    }

    /// `commit`, and when the mount's relay reports its listeners through
    /// callbacks, a token naming this reservation for the redirect to
    /// carry: the relay's `listener_add` echoes it and ends the
    /// reservation at once (`confirm_token`).
    fn keep(self, signer: Option<&Signer>) -> Slot {
        // Kept: not released on drop.
        let this = std::mem::ManuallyDrop::new(self);
        let m = &this.snap.mounts[this.mount];
        m.counters.redirects.fetch_add(1, Ordering::Relaxed);
        let s = &this.snap.servers[m.server];
        s.counters.redirects.fetch_add(1, Ordering::Relaxed);
        let token = signer
            .filter(|_| m.callbacks)
            .map(|signer| signer.sign(m.id, this.now_s));
        Slot {
            mount: this.mount,
            token,
        }
    }

    /// What the shared gate needs to know of this mount.
    fn view(&self, ttl_s: u64) -> MountView<'a> {
        let m = &self.snap.mounts[self.mount];
        let s = &self.snap.servers[m.server];
        let (mount_ring, server_ring) = (m.counters.ledger.ring(), s.counters.ledger.ring());
        let now_s = self.now_s;
        MountView {
            id: m.id,
            server: &s.name,
            mount: &m.path,
            mount_free: m
                .max
                .map(|max| u64::from(max).saturating_sub(m.listeners_now())),
            server_free: s
                .max_listeners
                .map(|max| u64::from(max).saturating_sub(s.listeners_now())),
            counts_from_s: mount_ring.window_start(now_s, ttl_s),
            // Without this reservation.
            own_mount: mount_ring.count(now_s, ttl_s).saturating_sub(1),
            own_server: server_ring.count(now_s, ttl_s).saturating_sub(1),
        }
    }

    /// The gate refused: the slot is taken back and the mount counts as
    /// full until the next second.
    fn refused(self) {
        let m = &self.snap.mounts[self.mount];
        m.counters
            .shared_full_until_s
            .fetch_max(self.now_s + 1, Ordering::Relaxed);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let m = &self.snap.mounts[self.mount];
        m.counters.ledger.remove(self.now_s);
        let s = &self.snap.servers[m.server];
        s.counters.ledger.remove(self.now_s);
    }
}

/// A committed slot: the listener goes to this mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Index into `Snapshot::mounts`.
    pub mount: usize,
    /// The signed token the redirect carries (`ibt=`), when the relay
    /// confirms its listeners through callbacks.
    pub token: Option<String>,
}

impl Slot {
    /// The query string for the mount's URL: the listener's own, with
    /// the token added when there is one.
    pub fn query<'q>(&self, listener: Option<&'q str>) -> Option<Cow<'q, str>> {
        let listener = listener.filter(|q| !q.is_empty());
        match (&self.token, listener) {
            (None, q) => q.map(Cow::Borrowed),
            (Some(t), None) => Some(Cow::Owned(format!("{}={t}", tokens::PARAM))),
            (Some(t), Some(q)) => Some(Cow::Owned(format!("{q}&{}={t}", tokens::PARAM))),
        }
    }
}

/// What a shared gate knows about one mount when a listener asks for it.
#[derive(Debug, Clone)]
pub struct MountView<'a> {
    /// The local mount id.
    pub id: i64,
    /// Names shared by every instance (ids are per database).
    pub server: &'a str,
    pub mount: &'a str,
    /// `max - listeners` by this instance's last poll (`None`: no limit).
    pub mount_free: Option<u64>,
    /// The server-wide cap minus all its listeners (`None`: no cap).
    pub server_free: Option<u64>,
    /// First second whose reservations still count: the local ring's
    /// window start after the last poll of this server.
    pub counts_from_s: u64,
    /// This instance's own reservations still counting on the mount and
    /// its server, without the one being asked for.
    pub own_mount: u64,
    pub own_server: u64,
}

impl MountView<'_> {
    pub(crate) fn is_unlimited(&self) -> bool {
        self.mount_free.is_none() && self.server_free.is_none()
    }
}

/// Capacity shared with others (the instances of a cluster): asked for
/// every slot reserved locally, which is kept only when it says yes.
pub trait SharedGate: Send + Sync {
    fn admit(&self, v: &MountView<'_>) -> impl Future<Output = bool> + Send;
}

/// What this instance holds on one mount, for the shared counts to re-add
/// when it (re)joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub server: String,
    pub mount: String,
    pub count: u64,
}

/// This instance's outstanding reservations on limited mounts.
pub fn held(snap: &Snapshot, now_s: u64, ttl_s: u64) -> Vec<Held> {
    snap.mounts
        .iter()
        .filter(|m| m.max.is_some() || snap.servers[m.server].max_listeners.is_some())
        .map(|m| Held {
            server: snap.servers[m.server].name.clone(),
            mount: m.path.clone(),
            count: m.counters.ledger.ring().count(now_s, ttl_s),
        })
        .filter(|h| h.count > 0)
        .collect()
}

/// Why a listener gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stream may not be heard where the client is.
    GeoBlocked,
    /// Some relay is up, but none has room (for this listener).
    Full,
    /// No relay of the stream is up (or it has none).
    Unavailable,
}

/// Who asks, and how the slot is kept.
pub struct Ask<'a, G> {
    pub client: &'a ClientGeo,
    pub want: Want,
    pub clock: &'a Clock,
    pub ttl_s: u64,
    /// The cluster's shared counts, with `--cluster`.
    pub gate: Option<&'a G>,
    /// Signs the tokens of redirects to relays with callbacks.
    pub signer: Option<&'a Signer>,
}

/// Whether the stream lets the client in; otherwise why it is refused.
fn refusal(stream: &StreamEntry) -> Refusal {
    if stream.routes.serving().is_empty() {
        Refusal::Unavailable
    } else {
        Refusal::Full
    }
}

/// Keeps `r` if the gate agrees; `false` (slot taken back) if not.
async fn confirm<G: SharedGate>(r: &Reservation<'_>, ask: &Ask<'_, G>) -> bool {
    match ask.gate {
        None => true,
        Some(g) => g.admit(&r.view(ask.ttl_s)).await,
    }
}

/// A redirect: the best mount for this listener, reserved and committed.
/// A mount the gate refuses counts as full for the second and the choice
/// is made again (bounded by the stream's mounts).
pub async fn redirect<G: SharedGate>(
    snap: &Snapshot,
    stream: &StreamEntry,
    ask: &Ask<'_, G>,
) -> Result<Slot, Refusal> {
    if !select::allowed(stream, ask.client) {
        return Err(Refusal::GeoBlocked);
    }
    for _ in 0..=stream.mounts.len() {
        let now_s = ask.clock.now_s();
        let chosen = select::choose(
            snap,
            stream,
            ask.client,
            ask.want,
            now_s,
            ask.ttl_s,
            &mut rand::rng(),
        );
        let Some(r) = chosen else { break };
        if confirm(&r, ask).await {
            return Ok(r.keep(ask.signer));
        }
        r.refused();
    }
    Err(refusal(stream))
}

/// What a playlist lists: mounts best first, and the slot committed on
/// the first when one was reserved (its token goes into the first URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub mounts: Vec<usize>,
    pub first: Option<Slot>,
}

/// A playlist (or a HEAD): up to `limit` mounts in the order selection
/// ranks them, a slot reserved and committed on the first when `reserve`
/// (a player takes the first; a HEAD is not a listener).
pub async fn playlist<G: SharedGate>(
    snap: &Snapshot,
    stream: &StreamEntry,
    ask: &Ask<'_, G>,
    limit: usize,
    reserve: bool,
) -> Result<Listing, Refusal> {
    if !select::allowed(stream, ask.client) {
        return Err(Refusal::GeoBlocked);
    }
    for _ in 0..=stream.mounts.len() {
        let now_s = ask.clock.now_s();
        let (list, first) = ranked(snap, stream, ask, limit, reserve, now_s);
        let Some(r) = first else {
            if list.is_empty() {
                break;
            }
            let first = None;
            return Ok(Listing {
                mounts: list,
                first,
            });
        };
        if confirm(&r, ask).await {
            let first = Some(r.keep(ask.signer));
            return Ok(Listing {
                mounts: list,
                first,
            });
        }
        r.refused();
    }
    Err(refusal(stream))
}

/// The ranked candidates, the first one reserved when `reserve` (a
/// candidate whose slot went to a concurrent request is skipped).
fn ranked<'s, G>(
    snap: &'s Snapshot,
    stream: &StreamEntry,
    ask: &Ask<'_, G>,
    limit: usize,
    reserve: bool,
    now_s: u64,
) -> (Vec<usize>, Option<Reservation<'s>>) {
    let ranked = select::rank(
        snap,
        stream,
        ask.client,
        ask.want,
        now_s,
        ask.ttl_s,
        &mut rand::rng(),
    );
    let mut list = Vec::with_capacity(limit.min(ranked.len()));
    let mut first = None;
    for a in ranked.iter().take_while(|a| a.excluded.is_none()) {
        if reserve && first.is_none() {
            match Reservation::try_new(snap, a.mount, now_s, ask.ttl_s) {
                Some(r) => first = Some(r),
                None => continue,
            }
        }
        list.push(a.mount);
        if list.len() == limit {
            break;
        }
    }
    (list, first)
}

/// What a relay's `listener_add` turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A listener we sent: its token ended the reservation it named.
    Confirmed,
    /// A listener without a usable token (a direct listener, or a
    /// forged, expired or replayed token): counted, nothing confirmed.
    Direct,
    /// Another relay pulling the stream: not a listener.
    RelayPull,
    /// A path no stream routes to (another mount, a status page).
    Unrouted,
}

/// What a relay's callback changed: how a `listener_add` counted, and
/// whether a mount the poll does not list now shows as serving (the
/// snapshot must be rebuilt for it to be used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub arrival: Arrival,
    pub revealed: bool,
}

/// A relay's `listener_add`: `client` connected to `uri` (the request
/// URI, query included) on server `server` (index in `Snapshot::servers`).
/// Counts the listener on its mount; a valid token in the URI for that
/// mount confirms the redirect's reservation (pending → listener).
pub fn listener_add(
    snap: &Snapshot,
    signer: &Signer,
    server: usize,
    caller: &Caller<'_>,
    now_ms: i64,
    ttl_s: u64,
) -> Outcome {
    let plain = |arrival| Outcome {
        arrival,
        revealed: false,
    };
    if is_relay(caller.agent) {
        return plain(Arrival::RelayPull);
    }
    let relay = &snap.servers[server];
    let path = caller.uri.split_once('?').map_or(caller.uri, |(p, _)| p);
    // Icecast 2.4 with `<mount type="default">` asks about every request,
    // its status pages included: only mounts of a stream are counted (the
    // poll accounts for the relay's other mounts).
    let Some(m) = snap.mount_at(server, path) else {
        return plain(Arrival::Unrouted);
    };
    let mount = &snap.mounts[m];
    let revealed = announce_mount(mount, true);
    let mref = MountRef {
        id: mount.id,
        counters: &mount.counters,
    };
    let c = &relay.counters;
    c.book.add(&c.callbacks, caller.client, mref, now_ms);
    let now_s = u64::try_from(now_ms / 1000).unwrap_or(0);
    let arrival = match tokens::from_uri(caller.uri) {
        Some(t) if confirm_token(snap, signer, m, t, now_s, ttl_s) => Arrival::Confirmed,
        _ => Arrival::Direct,
    };
    Outcome { arrival, revealed }
}

/// A relay's `mount_add` (`serving`) or `mount_remove` for `path`: the
/// only news of a hidden mount's source the balancer gets. Returns
/// whether a mount the poll does not list changed between serving and
/// not (the snapshot must be rebuilt).
pub fn announce(snap: &Snapshot, server: usize, path: &str, serving: bool) -> bool {
    snap.mount_at(server, path)
        .is_some_and(|m| announce_mount(&snap.mounts[m], serving))
}

/// `announce`, for a mount already found.
fn announce_mount(mount: &MountEntry, serving: bool) -> bool {
    // A listed mount is live by the poll, and is not hidden when its
    // source goes: only news of unlisted ones counts.
    if mount.live && !mount.hidden {
        // Read first: most callbacks are for listed mounts, and a write
        // would bounce the counter's cache line between the workers.
        if mount.counters.announced.load(Ordering::Relaxed) {
            mount.counters.announced.store(false, Ordering::Relaxed);
        }
        return false;
    }
    mount.counters.announced.swap(serving, Ordering::Relaxed) != serving
}

/// Who a relay says arrived.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The relay's id for the connection.
    pub client: u64,
    /// The listener's request URI, query included.
    pub uri: &'a str,
    pub agent: &'a str,
}

/// A relay's `listener_remove`: its slot is free at once. `false` when
/// the relay's book did not know the client.
pub fn listener_remove(snap: &Snapshot, server: usize, client: u64, now_ms: i64) -> bool {
    let c = &snap.servers[server].counters;
    c.book.remove(&c.callbacks, client, now_ms)
}

/// Ends the reservation `token` names, if the token is valid, unused and
/// for mount `m`: the listener now counts through the callbacks instead.
fn confirm_token(
    snap: &Snapshot,
    signer: &Signer,
    m: usize,
    token: &str,
    now_s: u64,
    ttl_s: u64,
) -> bool {
    let Some(claim) = signer.verify(token, now_s, ttl_s) else {
        return false;
    };
    let mount = &snap.mounts[m];
    if claim.mount != mount.id || !signer.redeem(claim, now_s, ttl_s) {
        return false;
    }
    mount.counters.ledger.remove(claim.issued_s);
    let server = &snap.servers[mount.server];
    server.counters.ledger.remove(claim.issued_s);
    true
}

/// Icecast relaying a stream from another identifies itself by its own
/// User-Agent ("Icecast 2.4.4", "icecast-kh 2.4.0-kh22").
fn is_relay(agent: &str) -> bool {
    let a = agent.trim_start().as_bytes();
    a.len() >= 7 && a[..7].eq_ignore_ascii_case(b"icecast")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::testing::{NOW, TTL, relay, snapshot};

    #[test]
    fn a_reservation_not_committed_is_released() {
        let s = snapshot(vec![relay("a", 0, Some(1))]);
        let count = || s.mounts[0].counters.ledger.count(NOW, TTL);
        let r = Reservation::try_new(&s, 0, NOW, TTL).unwrap();
        assert_eq!(count(), 1);
        assert!(Reservation::try_new(&s, 0, NOW, TTL).is_none(), "full");
        assert_eq!(count(), 1, "the refused one is taken back");
        drop(r);
        assert_eq!(count(), 0);
        assert_eq!(s.servers[0].counters.ledger.count(NOW, TTL), 0);
        let slot = Reservation::try_new(&s, 0, NOW, TTL).unwrap().commit();
        assert_eq!((slot.mount, count()), (0, 1));
        assert_eq!(s.mounts[0].counters.redirects.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn relays_are_told_by_their_user_agent() {
        assert!(is_relay("Icecast 2.4.4"));
        assert!(is_relay("icecast-kh 2.4.0-kh22"));
        assert!(!is_relay("VLC/3.0.18 LibVLC/3.0.18"));
        assert!(!is_relay(""));
    }

    #[test]
    fn the_token_joins_the_listeners_query() {
        let slot = |token: Option<&str>| Slot {
            mount: 0,
            token: token.map(String::from),
        };
        assert_eq!(slot(None).query(Some("a=1")).as_deref(), Some("a=1"));
        assert_eq!(slot(None).query(Some("")), None);
        assert_eq!(slot(Some("T")).query(None).as_deref(), Some("ibt=T"));
        assert_eq!(
            slot(Some("T")).query(Some("a=1")).as_deref(),
            Some("a=1&ibt=T")
        );
    }
}
