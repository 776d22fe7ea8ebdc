//! [`RecentTable`]: a fixed-size, lock-free table of recently seen tokens —
//! the admission window in front of an L1 cache.
//!
//! Why it exists: inserting into moka costs ~2.5 µs of CPU and a moka read
//! ~300 ns (they feed its frequency sketch), while a new token must cost the
//! L1 well under 1 µs to keep up with the raw Redis client. Most tokens are
//! seen once and never again; the ones that matter — retry storms, hot
//! tokens — are seen again within moments. So the L1 backends remember every
//! token here first (a few atomic stores), and move a token into the main
//! cache only when it is seen a second time.
//!
//! Each token is identified by a 128-bit keyed fingerprint (two independent
//! 64-bit hashes), so the table stores no strings and allocates nothing. The
//! table is set-associative (16 ways): a token is forgotten only when 16
//! newer tokens land in its set, oldest deadline first. Every slot is a
//! seqlock: readers never write, so a token read by many threads at once
//! stays in every core's cache. A read that races a write spins a moment for
//! the writer (a few stores), and reports a miss only if the writer stays
//! inside — always safe, since the store is the source of truth. A writer
//! takes its victim slot only if it still holds what the writer chose, so
//! two tokens inserted at once never overwrite each other: in a retry storm
//! that would send the lost token's next request to the store.

use crate::tier::{Owner, Seen};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use tokio::time::Instant;

/// Slots per set: a token survives at least this many newer tokens in its set.
const WAYS: usize = 16;
/// How many times a read retries while a writer is inside its slot.
const READ_SPINS: usize = 64;

const KIND_EMPTY: u64 = 0;
const KIND_OURS: u64 = 1;
const KIND_THEIRS: u64 = 2;
const KIND_FAILED_OPEN: u64 = 3;
/// Set on an entry once it has been read: the token was seen a second time.
const SEEN_AGAIN: u64 = 1 << 8;

#[derive(Default)]
#[repr(align(64))]
struct Slot {
    /// Even: stable; odd: a writer is inside.
    seq: AtomicU64,
    h2: AtomicU64,
    kind: AtomicU64,
    instance: AtomicU64,
    attempt: AtomicU64,
}

/// A fixed-size, lock-free, lossy memory of tokens with deadlines. See the
/// module documentation for why and how.
///
/// ```
/// use outbox_redis::recent::RecentTable;
/// use outbox_redis::Seen;
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let table = RecentTable::new(1_024);
/// let now = Instant::now();
/// table.insert("order-1", Seen::Theirs, now + Duration::from_secs(1));
/// assert_eq!(table.get("order-1", now), Some(Seen::Theirs));
/// assert_eq!(table.get("order-1", now + Duration::from_secs(1)), None);
/// ```
pub struct RecentTable {
    /// The first hash of each slot's token, contiguous so a set's 16 tags
    /// share two cache lines; 0 marks an empty slot.
    tags: Box<[AtomicU64]>,
    /// Each slot's deadline in nanoseconds after `base` (0: empty),
    /// contiguous for the same reason: choosing a victim reads all 16.
    deadlines: Box<[AtomicU64]>,
    slots: Box<[Slot]>,
    sets: u64,
    first: foldhash::fast::RandomState,
    second: foldhash::fast::RandomState,
    base: Instant,
}

impl std::fmt::Debug for RecentTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentTable")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl RecentTable {
    /// A table of about `capacity` slots (rounded up to a multiple of 16, at
    /// least 16).
    #[must_use]
    pub fn new(capacity: u64) -> Self {
        let sets = capacity.div_ceil(WAYS as u64).max(1);
        let len = usize::try_from(sets)
            .unwrap_or(usize::MAX / WAYS)
            .saturating_mul(WAYS);
        Self {
            tags: (0..len).map(|_| AtomicU64::new(0)).collect(),
            deadlines: (0..len).map(|_| AtomicU64::new(0)).collect(),
            slots: (0..len).map(|_| Slot::default()).collect(),
            sets,
            first: foldhash::fast::RandomState::default(),
            second: foldhash::fast::RandomState::default(),
            base: Instant::now(),
        }
    }

    /// Number of slots.
    #[must_use]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    fn at(&self, when: Instant) -> u64 {
        u64::try_from(when.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The keyed 128-bit fingerprint by which this table (and the main cache
    /// of a [`Windowed`] L1) knows `token`.
    #[must_use]
    pub fn fingerprint(&self, token: &str) -> Fingerprint {
        // A first half of 0 marks an empty slot, so it is never a token's.
        Fingerprint(self.first.hash_one(token) | 1, self.second.hash_one(token))
    }

    /// The first slot of the set of `fp`.
    fn set_of(&self, fp: Fingerprint) -> usize {
        // Lemire's multiply-shift maps the hash onto the sets without a
        // division; the result is below `sets`, which came from a usize.
        let set = ((u128::from(fp.0) * u128::from(self.sets)) >> 64) as u64;
        #[allow(clippy::cast_possible_truncation)]
        let start = set as usize * WAYS;
        start
    }

    /// Reads slot `i` consistently, or `None` if writers kept racing the
    /// read for `READ_SPINS` tries.
    fn read(&self, i: usize) -> Option<(Fingerprint, u64, Seen, bool)> {
        let slot = &self.slots[i];
        let (tag, h2, deadline, kind, owner) = (0..READ_SPINS).find_map(|_| {
            let before = slot.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                return None;
            }
            let tag = self.tags[i].load(Ordering::Relaxed);
            let h2 = slot.h2.load(Ordering::Relaxed);
            let deadline = self.deadlines[i].load(Ordering::Relaxed);
            let kind = slot.kind.load(Ordering::Relaxed);
            let owner = Owner::new(
                slot.instance.load(Ordering::Relaxed),
                slot.attempt.load(Ordering::Relaxed),
            );
            fence(Ordering::Acquire);
            (slot.seq.load(Ordering::Relaxed) == before).then_some((tag, h2, deadline, kind, owner))
        })?;
        let seen = match kind & !SEEN_AGAIN {
            KIND_OURS => Seen::Ours(owner),
            KIND_THEIRS => Seen::Theirs,
            KIND_FAILED_OPEN => Seen::FailedOpen,
            _ => return None,
        };
        Some((Fingerprint(tag, h2), deadline, seen, kind & SEEN_AGAIN != 0))
    }

    /// Writes slot `i` under its seqlock; `None` empties it.
    fn write(&self, i: usize, entry: Option<(Fingerprint, u64, Seen, bool)>) {
        let seq = self.lock(i);
        self.store(i, entry);
        self.unlock(i, seq);
    }

    /// Slot `i`'s tag and deadline, read without the seqlock: what a writer
    /// compares, under the lock, with what chose the slot as its victim.
    fn snapshot(&self, i: usize) -> (u64, u64) {
        (
            self.tags[i].load(Ordering::Relaxed),
            self.deadlines[i].load(Ordering::Relaxed),
        )
    }

    /// Enters slot `i`'s seqlock as its writer; answers the (even) sequence
    /// number it found, for [`unlock`](Self::unlock).
    fn lock(&self, i: usize) -> u64 {
        let slot = &self.slots[i];
        let mut seq = slot.seq.load(Ordering::Relaxed);
        loop {
            if seq & 1 == 0 {
                match slot.seq.compare_exchange_weak(
                    seq,
                    seq + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => seq = now,
                }
            } else {
                std::hint::spin_loop();
                seq = slot.seq.load(Ordering::Relaxed);
            }
        }
        fence(Ordering::Release);
        seq
    }

    /// Leaves slot `i`'s seqlock entered at `seq`.
    fn unlock(&self, i: usize, seq: u64) {
        self.slots[i].seq.store(seq + 2, Ordering::Release);
    }

    /// Stores `entry` in slot `i`, whose seqlock the caller holds.
    fn store(&self, i: usize, entry: Option<(Fingerprint, u64, Seen, bool)>) {
        let slot = &self.slots[i];
        let (fp, deadline, kind, owner) = match entry {
            None => (Fingerprint(0, 0), 0, KIND_EMPTY, Owner::new(0, 0)),
            Some((fp, deadline, seen, again)) => {
                let (kind, owner) = match seen {
                    Seen::Ours(owner) => (KIND_OURS, owner),
                    Seen::Theirs => (KIND_THEIRS, Owner::new(0, 0)),
                    Seen::FailedOpen => (KIND_FAILED_OPEN, Owner::new(0, 0)),
                };
                (
                    fp,
                    deadline,
                    if again { kind | SEEN_AGAIN } else { kind },
                    owner,
                )
            }
        };
        self.tags[i].store(fp.0, Ordering::Relaxed);
        slot.h2.store(fp.1, Ordering::Relaxed);
        self.deadlines[i].store(deadline, Ordering::Relaxed);
        slot.kind.store(kind, Ordering::Relaxed);
        slot.instance.store(owner.instance(), Ordering::Relaxed);
        slot.attempt.store(owner.attempt(), Ordering::Relaxed);
    }

    /// The slot holding `fp`, with its deadline, what it says, and whether it
    /// was seen again.
    fn find(&self, fp: Fingerprint) -> Option<(usize, u64, Seen, bool)> {
        let start = self.set_of(fp);
        (start..start + WAYS).find_map(|i| {
            if self.tags[i].load(Ordering::Relaxed) != fp.0 {
                return None;
            }
            let (found, deadline, seen, again) = self.read(i)?;
            (found == fp).then_some((i, deadline, seen, again))
        })
    }

    /// What is remembered about `token`, if its deadline is after `now`.
    #[must_use]
    pub fn get(&self, token: &str, now: Instant) -> Option<Seen> {
        self.get_fp(self.fingerprint(token), now, false)
    }

    /// What is remembered about `fp`, if its deadline is after `now`; with
    /// `mark`, the entry is also marked as seen again (once), which decides
    /// whether it moves to the main cache when the window evicts it.
    #[must_use]
    pub fn get_fp(&self, fp: Fingerprint, now: Instant, mark: bool) -> Option<Seen> {
        let (i, deadline, seen, again) = self.find(fp)?;
        if deadline <= self.at(now) {
            return None;
        }
        if mark && !again {
            self.write(i, Some((fp, deadline, seen, true)));
        }
        Some(seen)
    }

    /// Remembers `seen` for `token` until `deadline`, replacing its earlier
    /// entry, or else the entry of its set that expires first.
    pub fn insert(&self, token: &str, seen: Seen, deadline: Instant) {
        let _ = self.insert_fp(self.fingerprint(token), seen, deadline, false);
    }

    /// [`insert`](Self::insert) by fingerprint, `again` marking the entry as
    /// seen again. Answers the entry it evicted, if that one was still live
    /// and had been seen again: a hot token the caller may keep elsewhere.
    #[must_use = "a hot entry evicted from the window is lost unless kept elsewhere"]
    pub fn insert_fp(
        &self,
        fp: Fingerprint,
        seen: Seen,
        deadline: Instant,
        again: bool,
    ) -> Option<Evicted> {
        let entry = Some((fp, self.at(deadline), seen, again));
        let start = self.set_of(fp);
        // Each retry means another writer took the chosen slot first, so the
        // set made progress; after `WAYS` of them, take the slot anyway.
        for attempt in 0..=WAYS {
            if let Some((i, ..)) = self.find(fp) {
                self.write(i, entry);
                return None;
            }
            // Empty slots have deadline 0, so they go first. The victim is
            // taken only if it still holds the token and deadline that chose
            // it: otherwise another writer took it meanwhile.
            let (i, chosen) = (start..start + WAYS)
                .map(|i| (i, self.snapshot(i)))
                .min_by_key(|&(_, (_, deadline))| deadline)
                .unwrap_or((start, (0, 0)));
            // What the victim held (`None` when empty), for the main cache.
            let old = self.read(i);
            let seq = self.lock(i);
            if self.snapshot(i) != chosen && attempt < WAYS {
                self.unlock(i, seq);
                continue;
            }
            self.store(i, entry);
            self.unlock(i, seq);
            let now = self.at(Instant::now());
            return old
                .filter(|&(old, old_deadline, _, old_again)| {
                    (old.0, old_deadline) == chosen && old_again && old_deadline > now
                })
                .map(|(old, old_deadline, old_seen, _)| Evicted {
                    fingerprint: old,
                    seen: old_seen,
                    deadline: self.base + std::time::Duration::from_nanos(old_deadline),
                });
        }
        None
    }

    /// Forgets `token`.
    pub fn remove(&self, token: &str) {
        self.remove_fp(self.fingerprint(token));
    }

    /// Forgets `fp`.
    pub fn remove_fp(&self, fp: Fingerprint) {
        if let Some((i, ..)) = self.find(fp) {
            self.write(i, None);
        }
    }

    /// How many slots hold an entry whose deadline is after `now`.
    #[must_use]
    pub fn live(&self, now: Instant) -> u64 {
        let now = self.at(now);
        (0..self.slots.len())
            .filter(|&i| matches!(self.read(i), Some((fp, deadline, ..)) if fp.0 != 0 && deadline > now))
            .count() as u64
    }
}

/// A token's keyed 128-bit fingerprint: what the window and the main cache
/// store instead of the token, so neither copies strings. Two different
/// tokens share one with probability 2^-128.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Fingerprint(u64, u64);

/// A hot entry the window evicted (see [`RecentTable::insert_fp`]).
#[derive(Clone, Copy, Debug)]
pub struct Evicted {
    /// Whose entry it was.
    pub fingerprint: Fingerprint,
    /// What it said.
    pub seen: Seen,
    /// Until when.
    pub deadline: Instant,
}

/// The main space of a [`Windowed`] L1: a bounded cache of the tokens that
/// were seen more than once and outlived the window (moka, mini-moka).
pub trait MainCache: Send + Sync {
    /// The entry for `fp` with its deadline, if any.
    fn get(&self, fp: Fingerprint) -> Option<(Seen, Instant)>;
    /// Stores `fp` until `deadline`.
    fn insert(&self, fp: Fingerprint, seen: Seen, deadline: Instant);
    /// Forgets `fp`.
    fn remove(&self, fp: Fingerprint);
    /// Entries held.
    fn entry_count(&self) -> u64;
    /// Finishes deferred maintenance.
    fn run_pending_tasks(&self);
}

/// An L1 in two parts, like W-TinyLFU: every token enters a [`RecentTable`]
/// window (a few atomic stores), and only a token that was seen again and
/// is still live when the window evicts it moves into the main cache `M`.
/// New tokens — most are never seen twice — so cost the L1 almost nothing;
/// retry storms and hot tokens are answered from the window with a few
/// atomic loads; and tokens that stay hot outlive the window in the main
/// cache, which is then the only place that pays moka's insert.
///
/// The window holds half of the capacity and the main cache the other half,
/// so together they hold at most about `capacity` tokens.
pub struct Windowed<M> {
    window: RecentTable,
    main: M,
}

impl<M> std::fmt::Debug for Windowed<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Windowed")
            .field("window_slots", &self.window.slots())
            .field("main", &std::any::type_name::<M>())
            .finish()
    }
}

impl<M> Windowed<M> {
    /// A window of about `capacity / 2` slots in front of the main cache
    /// that `main(capacity - window)` builds.
    pub fn with_main(capacity: u64, main: impl FnOnce(u64) -> M) -> Self {
        let window = RecentTable::new(capacity / 2);
        let rest = capacity.saturating_sub(window.slots() as u64).max(1);
        Self {
            window,
            main: main(rest),
        }
    }

    /// The main cache.
    pub fn main(&self) -> &M {
        &self.main
    }
}

impl<M: MainCache> Windowed<M> {
    fn keep(&self, evicted: Option<Evicted>) {
        if let Some(hot) = evicted {
            self.main.insert(hot.fingerprint, hot.seen, hot.deadline);
        }
    }
}

impl<M: MainCache> crate::tier::LocalCache for Windowed<M> {
    #[inline]
    fn get(&self, token: &str, now: Instant) -> Option<Seen> {
        let fp = self.window.fingerprint(token);
        if let Some(seen) = self.window.get_fp(fp, now, true) {
            return Some(seen);
        }
        let (seen, deadline) = self.main.get(fp)?;
        if deadline <= now {
            return None;
        }
        // Hot again: back into the window, where reads are cheapest.
        self.keep(self.window.insert_fp(fp, seen, deadline, true));
        Some(seen)
    }

    fn insert(&self, token: &str, seen: Seen, deadline: Instant) {
        let fp = self.window.fingerprint(token);
        self.keep(self.window.insert_fp(fp, seen, deadline, false));
    }

    fn remove(&self, token: &str) {
        let fp = self.window.fingerprint(token);
        self.window.remove_fp(fp);
        self.main.remove(fp);
    }

    fn entry_count(&self) -> u64 {
        self.window.live(Instant::now()) + self.main.entry_count()
    }

    fn run_pending_tasks(&self) {
        self.main.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn remembers_replaces_and_forgets() {
        let table = RecentTable::new(64);
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        table.insert("a", Seen::Ours(Owner::new(3, 4)), later);
        assert_eq!(table.get("a", now), Some(Seen::Ours(Owner::new(3, 4))));
        table.insert("a", Seen::Theirs, later);
        assert_eq!(table.get("a", now), Some(Seen::Theirs));
        assert_eq!(table.live(now), 1);
        table.remove("a");
        assert_eq!(table.get("a", now), None);
        assert_eq!(table.live(now), 0);
    }

    #[test]
    fn a_full_set_evicts_the_earliest_deadline_first() {
        let table = RecentTable::new(16); // one set
        let now = Instant::now();
        for i in 0..16u64 {
            table.insert(
                &format!("t{i}"),
                Seen::Theirs,
                now + Duration::from_secs(100 + i),
            );
        }
        table.insert("new", Seen::Theirs, now + Duration::from_secs(500));
        assert_eq!(table.get("t0", now), None, "the earliest deadline went");
        for i in 1..16 {
            assert_eq!(table.get(&format!("t{i}"), now), Some(Seen::Theirs));
        }
        assert_eq!(table.get("new", now), Some(Seen::Theirs));
        assert_eq!(table.live(now), 16);
    }

    #[test]
    fn only_hot_live_entries_are_handed_back_on_eviction() {
        let table = RecentTable::new(16); // one set
        let now = Instant::now();
        let hot = table.fingerprint("hot");
        assert!(
            table
                .insert_fp(hot, Seen::Theirs, now + Duration::from_secs(100), false)
                .is_none()
        );
        assert_eq!(table.get_fp(hot, now, true), Some(Seen::Theirs)); // seen again
        for i in 0..15u64 {
            table.insert(
                &format!("cold{i}"),
                Seen::Theirs,
                now + Duration::from_secs(200 + i),
            );
        }
        let evicted = table.insert_fp(
            table.fingerprint("new"),
            Seen::Theirs,
            now + Duration::from_secs(500),
            false,
        );
        let evicted = evicted.expect("the hot entry is handed back");
        assert_eq!(evicted.fingerprint, hot);
        let cold = table.insert_fp(
            table.fingerprint("newer"),
            Seen::Theirs,
            now + Duration::from_secs(600),
            false,
        );
        assert!(cold.is_none(), "a cold entry is dropped");
    }

    #[test]
    fn tokens_inserted_at_once_never_overwrite_each_other() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(60);
        for round in 0..500 {
            let table = RecentTable::new(16); // one set: every insert contends
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                for writer in 0..2 {
                    let (table, start) = (&table, &start);
                    scope.spawn(move || {
                        start.wait();
                        for i in 0..8 {
                            table.insert(&format!("{writer}-{i}"), Seen::Theirs, deadline);
                        }
                    });
                }
            });
            let lost: Vec<String> = (0..2)
                .flat_map(|w| (0..8).map(move |i| format!("{w}-{i}")))
                .filter(|token| table.get(token, now).is_none())
                .collect();
            assert!(lost.is_empty(), "round {round}: lost {lost:?}");
        }
    }

    #[test]
    fn concurrent_readers_and_writers_never_see_a_torn_entry() {
        let table = std::sync::Arc::new(RecentTable::new(16));
        let now = Instant::now();
        let deadline = now + Duration::from_secs(60);
        std::thread::scope(|scope| {
            for writer in 0..2u64 {
                let table = table.clone();
                scope.spawn(move || {
                    for i in 0..20_000u64 {
                        // Both halves carry the writer, so a torn read shows.
                        let owner = Owner::new(writer, writer * 1_000_000 + i);
                        table.insert("shared", Seen::Ours(owner), deadline);
                    }
                });
            }
            let table = table.clone();
            scope.spawn(move || {
                for _ in 0..20_000 {
                    if let Some(Seen::Ours(owner)) = table.get("shared", now) {
                        assert_eq!(
                            owner.attempt() / 1_000_000,
                            owner.instance(),
                            "torn owner {owner:?}"
                        );
                    }
                }
            });
        });
    }
}
