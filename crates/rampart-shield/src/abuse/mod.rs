//! Credential-stuffing and brute-force defense: failed-authentication
//! tracking, progressive delay, lockout, distributed-attack detection.
//!
//! [`AuthGuard`] sits around authentication. The gateway calls
//! [`AuthGuard::admit`] once per attempt *before* verifying credentials
//! (and does not verify unless the answer lets it through), then
//! [`AuthGuard::record_failure`] or [`AuthGuard::record_success`] with the
//! outcome. It does no I/O and spawns nothing; time comes from an injected
//! [`Clock`], so every window and lock runs on a fake clock in tests.
//!
//! # What is counted
//!
//! Failures are counted per (source IP, claimed key id) *pair*, per source
//! IP, per source prefix (/24 for IPv4, /64 for IPv6; IPv4-mapped IPv6
//! addresses count as IPv4), per key id over all sources, and globally.
//! Each count is a leaky bucket run by the crate's exact GCRA
//! ([`crate::gcra_step`]): a [`FailureLimit`] of `n` per `window` fills after
//! `n` failures in a burst and forgets one failure every `window / n`.
//!
//! # Consequences
//!
//! | what | default | answer |
//! | --- | --- | --- |
//! | pair failures ≥ 3 | 250 ms, doubling, ≤ 2 s | [`Admission::Delay`] |
//! | pair failures = 10 (PCI DSS 8.3.4) | lock the pair 30 min, doubling per repeat within 24 h, ≤ 24 h | [`Admission::Locked`] `Pair` |
//! | IP failures = 30 / h | lock the IP 30 min (doubling, ≤ 24 h) | `Locked` `Ip` |
//! | prefix failures = 150 / h | lock the prefix 15 min (doubling, ≤ 6 h) | `Locked` `Prefix` |
//! | key failures = 20 / h from ≥ 3 sources | alert; unknown sources for that key share 5 attempts / 15 min | [`Admission::Throttled`] |
//! | ≥ 50 failing IPs and ≥ 100 failing key ids in 10 min, new-source success ratio < 20 % | alert, *under attack*: each unknown IP gets 2 attempts / 10 min, each unknown prefix 10 | `Throttled` |
//!
//! A lock ends at its time or by [`AuthGuard::unlock`]; the failure that
//! fills a budget triggers its lock and empties the budget, so a source
//! coming out of a lock starts from zero, and repeats escalate through the
//! doubling instead.
//!
//! **The victim key id is never locked.** Locks apply to the attacking
//! *source* (pair, IP, prefix). A key's owner at their usual address holds
//! a *known-good* pair (a success from that IP for that key within 30
//! days), which is exempt from IP and prefix locks and from every throttle;
//! only its own pair lock applies to it. So an attacker guessing a real
//! user's key id from elsewhere locks their own pair, IP and prefix, and at
//! most throttles *unknown* sources for that key (a traveller on a new
//! network), never the owner at home.
//!
//! **Known and unknown sources.** A source is *unknown* if it is not
//! trusted ([`AuthGuardConfig::trusted`]), has no known-good pair for the
//! key it claims, and its IP has had no success for any key in 30 days (or
//! has, but has since used half its IP failure budget: an attacker holding
//! one valid account cannot launder a botnet by logging in once from each
//! node). Trusted sources are never IP/prefix-locked or throttled, but
//! their pairs still lock (the 10-attempt limit is per user).
//!
//! **Distributed detection.** Within the detection window the guard counts
//! failures, distinct failing IPs, distinct failing key ids (bounded sets,
//! saturating at [`AuthGuardConfig::distinct_cap`]), and successes *from new
//! sources* (a pair's first success in the known-good period). The success
//! ratio is taken over new sources only, because on an API gateway every
//! request from every running bot authenticates: counting those would hide
//! any attack under millions of routine successes. Stuffing lists hit a few
//! percent; new legitimate sources mostly succeed. When all three
//! conditions hold, [`AuthGuard::record_failure`] returns a
//! `credential_stuffing` [`Alert`] and the guard is *under attack* until
//! the condition has not held for the quiet period (15 min).
//!
//! # Bounded state, failing safe
//!
//! Every table has a capacity. When a new entry meets a full table, entries
//! with no live state are forgotten first (which changes no decision), then
//! entries that only hold lock history (their next lock will not
//! escalate). Live state — a lock, an unexpired failure count, a throttle —
//! is **never** forgotten to make room: the new entry is refused instead,
//! the table's shard is marked *saturated* for a minute (a
//! `guard_saturated` alert), and during that minute unknown sources that
//! would need a new entry there are [`Admission::Throttled`]. Known-good
//! and trusted sources and everything already tracked keep working
//! exactly. The known-good tables are the exception: when full they forget
//! an arbitrary entry, which is safe (that source just becomes unknown).
//!
//! At the defaults the tables hold at most ≈ 80 MiB (hash-table slack
//! and stored key ids included; pairs ≈ 30, key ids ≈ 16, IPs ≈ 12,
//! known-good ≈ 13, prefixes ≈ 6); the `max_*` fields scale it linearly.
//!
//! # Counting quirks (on purpose)
//!
//! - [`AuthGuard::admit`] consumes throttle quota, so call it once per
//!   attempt. Delay answers consume nothing; the gateway sleeps, then
//!   verifies.
//! - An empty key id is tracked as a key id of its own for the pair, but not
//!   per key id or in the distinct-key count.
//! - A success resets its pair's failures and lock history (not an active
//!   lock); it does not reset IP, prefix or key counts.

mod config;
mod detect;
mod table;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use parking_lot::Mutex;
use serde::Serialize;

use self::config::{dur_ns, Compiled};
pub use self::config::{AuthGuardConfig, ConfigError, FailureLimit, LockPolicy, RateSpec};
use self::detect::{Detect, Snapshot};
pub(crate) use self::table::IdentityState;
use self::table::{Expiring, Table, WhenFull};
use crate::alert::{kind, Alert, Severity};
use crate::clock::Clock;
use crate::gcra::{gcra_step, Decision, Quota};
use crate::KeyHasher;

/// Distinct failing sources remembered per key id.
pub(crate) const KEY_SOURCE_SLOTS: u32 = 8;
/// Longest key id kept for display in [`LockInfo`] (bytes).
const KEY_ID_KEEP: usize = 64;
/// "No attack" in [`AuthGuard`]'s attack-start slot.
const NONE: u64 = u64::MAX;

/// What the gateway should do with an authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Verify the credentials.
    Allow,
    /// Wait this long, then verify (progressive delay after failures).
    Delay(Duration),
    /// Refuse without verifying (`LOCKED_OUT`).
    Locked {
        /// Time until the lock ends by itself.
        retry_after: Duration,
        /// What is locked.
        scope: LockScope,
    },
    /// Refuse without verifying (`RATE_LIMITED`): a pre-authentication
    /// limit for unknown sources, while under attack, while the key is
    /// targeted, or while the guard is saturated.
    Throttled {
        /// Time after which the same attempt may pass.
        retry_after: Duration,
    },
}

impl Admission {
    /// Whether the gateway should go on to verify (after any delay).
    #[must_use]
    pub fn proceeds(&self) -> bool {
        matches!(self, Self::Allow | Self::Delay(_))
    }

    /// For refusals, the `Retry-After` to send.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Locked { retry_after, .. } | Self::Throttled { retry_after } => {
                Some(*retry_after)
            }
            Self::Allow | Self::Delay(_) => None,
        }
    }
}

/// What a lock covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockScope {
    /// One (source IP, key id) pair.
    Pair,
    /// Every attempt from one source IP (except its known-good pairs).
    Ip,
    /// Every attempt from one /24 or /64 (except known-good pairs).
    Prefix,
}

/// What [`AuthGuard::unlock`] lifts. Unlocking forgets the matching
/// entries whole: lock, failure counts, lock history, throttles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlock {
    /// One (source IP, key id) pair.
    Pair {
        /// The source.
        ip: IpAddr,
        /// The key id.
        key_id: String,
    },
    /// One source IP and every pair from it. A lock on its prefix stays.
    Ip(IpAddr),
    /// Every tracked prefix, IP and pair inside this network.
    Prefix(IpNet),
    /// Every pair on this key id (a user locked out everywhere), and the
    /// key's targeted state.
    Key(String),
    /// Everything, including the attack flag and saturation. Known-good
    /// sources are kept.
    All,
}

/// Totals since construction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GuardCounters {
    /// [`Admission::Allow`] answers.
    pub allowed: u64,
    /// [`Admission::Delay`] answers.
    pub delayed: u64,
    /// [`Admission::Locked`] answers.
    pub locked: u64,
    /// [`Admission::Throttled`] answers.
    pub throttled: u64,
    /// Failures recorded.
    pub failures: u64,
    /// Successes recorded.
    pub successes: u64,
    /// Alerts returned.
    pub alerts: u64,
}

/// A snapshot for an admin endpoint or metrics. Computing it visits every
/// table (O(entries)), so poll it, don't call it per request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GuardStatus {
    /// Whether the guard is under a distributed attack.
    pub under_attack: bool,
    /// When the current attack was detected (Unix ms).
    pub under_attack_since_unix_ms: Option<u64>,
    /// Failures in the detection window.
    pub window_failures: u64,
    /// Successes from new sources in the detection window.
    pub window_new_source_successes: u64,
    /// Distinct failing source IPs in the window.
    pub distinct_failing_ips: usize,
    /// Distinct failing key ids in the window.
    pub distinct_failing_keys: usize,
    /// Pairs locked now.
    pub locked_pairs: usize,
    /// IPs locked now.
    pub locked_ips: usize,
    /// Prefixes locked now.
    pub locked_prefixes: usize,
    /// Key ids targeted now.
    pub targeted_keys: usize,
    /// Pairs tracked.
    pub tracked_pairs: usize,
    /// IPs tracked.
    pub tracked_ips: usize,
    /// Prefixes tracked.
    pub tracked_prefixes: usize,
    /// Key ids tracked.
    pub tracked_keys: usize,
    /// Known-good pairs remembered.
    pub known_pairs: usize,
    /// Known-good IPs remembered.
    pub known_ips: usize,
    /// Whether any shard is saturated now.
    pub saturated: bool,
    /// Totals since start.
    pub totals: GuardCounters,
}

/// One active lock, for an admin listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockInfo {
    /// What is locked.
    pub scope: LockScope,
    /// The locked source: the IP (as a host prefix) or the prefix.
    #[serde(serialize_with = "display")]
    pub source: IpNet,
    /// For pair locks, the key id (its first 64 bytes).
    pub key_id: Option<String>,
    /// Time until the lock ends by itself, in ms.
    pub retry_after_ms: u64,
    /// Locks of this entity within the strike memory, this one included.
    pub strikes: u32,
}

fn display<S: serde::Serializer>(v: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A lock and its history.
#[derive(Debug, Clone, Copy, Default)]
struct Lock {
    until: u64,
    strikes: u32,
    /// When the strikes are forgotten (end of the last lock + memory).
    forget_at: u64,
}

impl Lock {
    fn active(&self, now: u64) -> bool {
        self.until > now
    }

    /// Engages the lock at `now`; returns its duration.
    fn engage(&mut self, now: u64, policy: &LockPolicy) -> Duration {
        if now >= self.forget_at {
            self.strikes = 0;
        }
        let d = policy.duration(self.strikes);
        self.strikes = self.strikes.saturating_add(1);
        self.until = now.saturating_add(dur_ns(d));
        self.forget_at = self.until.saturating_add(dur_ns(policy.strike_memory));
        d
    }
}

#[derive(Debug, Default)]
struct PairState {
    ip: Option<IpAddr>,
    key: u64,
    key_id: Box<str>,
    fails: Option<u64>,
    lock: Lock,
}

impl Expiring for PairState {
    fn live_until(&self) -> u64 {
        self.fails.unwrap_or(0).max(self.lock.until)
    }
    fn keep_until(&self) -> u64 {
        self.live_until().max(self.lock.forget_at)
    }
}

/// A source's state: one IP address, or one /24 (/64) prefix.
#[derive(Debug)]
struct SourceState<A> {
    /// The address or prefix (kept for listings and unlocks).
    at: Option<A>,
    fails: Option<u64>,
    lock: Lock,
    throttle: Option<u64>,
}

impl<A> Default for SourceState<A> {
    fn default() -> Self {
        Self {
            at: None,
            fails: None,
            lock: Lock::default(),
            throttle: None,
        }
    }
}

impl<A> Expiring for SourceState<A> {
    fn live_until(&self) -> u64 {
        self.fails
            .unwrap_or(0)
            .max(self.lock.until)
            .max(self.throttle.unwrap_or(0))
    }
    fn keep_until(&self) -> u64 {
        self.live_until().max(self.lock.forget_at)
    }
}

type IpState = SourceState<IpAddr>;
type PrefixState = SourceState<IpNet>;

#[derive(Debug, Default)]
struct KeyState {
    fails: Option<u64>,
    /// Hashes of recent failing source IPs (a ring; 0 = empty).
    sources: [u64; KEY_SOURCE_SLOTS as usize],
    next_slot: usize,
    targeted_until: u64,
    unknown: Option<u64>,
}

impl KeyState {
    fn distinct_sources(&self) -> u32 {
        let n = self.sources.iter().filter(|s| **s != 0).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn note_source(&mut self, ip_h: u64) {
        // 0 marks an empty slot; a real hash of 0 is merely not counted.
        if ip_h == 0 || self.sources.contains(&ip_h) {
            return;
        }
        if let Some(slot) = self.sources.get_mut(self.next_slot) {
            *slot = ip_h;
        }
        self.next_slot = (self.next_slot + 1) % self.sources.len();
    }
}

impl Expiring for KeyState {
    fn live_until(&self) -> u64 {
        self.fails
            .unwrap_or(0)
            .max(self.targeted_until)
            .max(self.unknown.unwrap_or(0))
    }
}

#[derive(Debug)]
struct SourceShard {
    pairs: Table<PairState>,
    ips: Table<IpState>,
    prefixes: Table<PrefixState>,
    known_pairs: Table<u64>,
    known_ips: Table<u64>,
    saturated_until: u64,
}

#[derive(Debug)]
struct KeyShard {
    keys: Table<KeyState>,
    saturated_until: u64,
}

/// A shard on its own cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(Mutex<T>);

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    delayed: AtomicU64,
    locked: AtomicU64,
    throttled: AtomicU64,
    failures: AtomicU64,
    successes: AtomicU64,
    alerts: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A source address with its prefix, hashes and shard, computed once.
#[derive(Debug, Clone, Copy)]
struct Source {
    ip: IpAddr,
    net: IpNet,
    ip_h: u64,
    net_h: u64,
    shard: usize,
    trusted: bool,
}

pub(crate) fn octets(ip: IpAddr) -> ([u8; 16], usize) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0_u8; 16];
            for (d, s) in b.iter_mut().zip(a.octets()) {
                *d = s;
            }
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// The /`v4`, /`v6` prefix holding `ip` (already canonical).
pub(crate) fn prefix_of(ip: IpAddr, v4: u8, v6: u8) -> IpNet {
    match ip {
        IpAddr::V4(a) => Ipv4Net::new(a, v4)
            .map(|n| IpNet::V4(n.trunc()))
            .unwrap_or_else(|_| IpNet::from(ip)),
        IpAddr::V6(a) => Ipv6Net::new(a, v6)
            .map(|n| IpNet::V6(n.trunc()))
            .unwrap_or_else(|_| IpNet::from(ip)),
    }
}

/// Failures currently in a bucket whose TAT is `tat`.
fn failures(tat: Option<u64>, now: u64, q: &Quota) -> u32 {
    let level = tat.map_or(0, |t| t.saturating_sub(now));
    let n = level.div_ceil(q.emission_interval_ns().max(1));
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Records one failure in a bucket; `true` if the bucket is now full (the
/// limit is reached).
fn fail_step(tat: &mut Option<u64>, now: u64, q: &Quota) -> bool {
    let (d, next) = gcra_step(*tat, now, q, 1);
    *tat = next;
    match d {
        Decision::Allowed { remaining, .. } => remaining == 0,
        Decision::Denied { .. } | Decision::Never { .. } | Decision::FailClosed { .. } => true,
    }
}

/// Consumes one attempt from a throttle bucket; `Some(retry_after)` if
/// refused.
fn throttle_step(tat: &mut Option<u64>, now: u64, q: &Quota) -> Option<Duration> {
    let (d, next) = gcra_step(*tat, now, q, 1);
    *tat = next;
    match d {
        Decision::Allowed { .. } => None,
        Decision::Denied { retry_after, .. } => Some(retry_after),
        Decision::Never { .. } | Decision::FailClosed { .. } => Some(q.period()),
    }
}

fn keep_key_id(key_id: &str) -> Box<str> {
    let mut end = key_id.len().min(KEY_ID_KEEP);
    while !key_id.is_char_boundary(end) {
        end -= 1;
    }
    key_id.get(..end).unwrap_or_default().into()
}

/// Failed-authentication tracking around authentication; see the module
/// docs for what it counts and decides.
///
/// `Send + Sync`; share one per process (behind an `Arc`). State is
/// sharded by source prefix and by key id, each shard behind its own
/// mutex; the detection window has one mutex touched only by failures and
/// by first successes of new sources.
#[derive(Debug)]
pub struct AuthGuard<C: Clock> {
    c: Compiled,
    clock: C,
    origin_unix_ms: u64,
    hasher: KeyHasher,
    sources: Box<[Padded<SourceShard>]>,
    keys: Box<[Padded<KeyShard>]>,
    mask: u64,
    detect: Mutex<Detect>,
    attack_since: AtomicU64,
    attack_last: AtomicU64,
    counters: Counters,
}

/// How many shards a total capacity is spread over, per shard.
fn per_shard(total: usize, shards: usize) -> usize {
    total.div_ceil(shards.max(1)).max(1)
}

impl<C: Clock> AuthGuard<C> {
    /// A guard with `config`, reading time from `clock`.
    /// `unix_ms_at_clock_origin` is the wall-clock time (Unix ms) at which
    /// `clock` read 0; it only dates [`Alert`]s (for a
    /// [`crate::MonotonicClock`] made now, pass the current system time).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] listing every invalid field.
    pub fn new(
        config: AuthGuardConfig,
        clock: C,
        unix_ms_at_clock_origin: u64,
    ) -> Result<Self, ConfigError> {
        let c = Compiled::new(config)?;
        let n = c.cfg.shards;
        let cfg = &c.cfg;
        let sources = (0..n)
            .map(|_| {
                Padded(Mutex::new(SourceShard {
                    pairs: Table::new(per_shard(cfg.max_pairs, n), WhenFull::Refuse),
                    ips: Table::new(per_shard(cfg.max_ips, n), WhenFull::Refuse),
                    prefixes: Table::new(per_shard(cfg.max_prefixes, n), WhenFull::Refuse),
                    known_pairs: Table::new(per_shard(cfg.max_known_pairs, n), WhenFull::EvictAny),
                    known_ips: Table::new(per_shard(cfg.max_known_ips, n), WhenFull::EvictAny),
                    saturated_until: 0,
                }))
            })
            .collect();
        let keys = (0..n)
            .map(|_| {
                Padded(Mutex::new(KeyShard {
                    keys: Table::new(per_shard(cfg.max_keys, n), WhenFull::Refuse),
                    saturated_until: 0,
                }))
            })
            .collect();
        let detect = Mutex::new(Detect::new(dur_ns(cfg.detect_window), cfg.distinct_cap));
        Ok(Self {
            mask: u64::try_from(n.saturating_sub(1)).unwrap_or(0),
            c,
            clock,
            origin_unix_ms: unix_ms_at_clock_origin,
            hasher: KeyHasher::new(),
            sources,
            keys,
            detect,
            attack_since: AtomicU64::new(NONE),
            attack_last: AtomicU64::new(0),
            counters: Counters::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &AuthGuardConfig {
        &self.c.cfg
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    fn source(&self, ip: IpAddr) -> Source {
        let ip = ip.to_canonical();
        let cfg = &self.c.cfg;
        let net = prefix_of(ip, cfg.ipv4_prefix_len, cfg.ipv6_prefix_len);
        let (b, len) = octets(ip);
        let ip_h = self.hasher.key(2, b"", b.get(..len).unwrap_or_default());
        let (nb, nlen) = octets(net.network());
        let net_h = self
            .hasher
            .key(3, &[net.prefix_len()], nb.get(..nlen).unwrap_or_default());
        Source {
            ip,
            net,
            ip_h,
            net_h,
            shard: self.shard_of(net_h),
            trusted: cfg.trusted.iter().any(|t| t.contains(&ip)),
        }
    }

    fn shard_of(&self, h: u64) -> usize {
        usize::try_from((h >> 32) & self.mask).unwrap_or(0)
    }

    fn pair_hash(&self, src: &Source, key_id: &str) -> u64 {
        let (b, len) = octets(src.ip);
        self.hasher
            .key(1, b.get(..len).unwrap_or_default(), key_id.as_bytes())
    }

    fn key_hash(&self, key_id: &str) -> u64 {
        self.hasher.key(4, b"", key_id.as_bytes())
    }

    fn source_shard(&self, i: usize) -> Option<&Mutex<SourceShard>> {
        self.sources.get(i).map(|p| &p.0)
    }

    fn key_shard(&self, key_h: u64) -> Option<&Mutex<KeyShard>> {
        self.keys.get(self.shard_of(key_h)).map(|p| &p.0)
    }

    fn unix_ms(&self, now: u64) -> u64 {
        self.origin_unix_ms.saturating_add(now / 1_000_000)
    }

    fn under_attack(&self, now: u64) -> bool {
        self.attack_since.load(Ordering::Acquire) != NONE
            && now
                < self
                    .attack_last
                    .load(Ordering::Acquire)
                    .saturating_add(dur_ns(self.c.cfg.quiet_period))
    }

    fn delay(&self, pair_failures: u32) -> Duration {
        let cfg = &self.c.cfg;
        if pair_failures < cfg.delay_after.max(1) {
            return Duration::ZERO;
        }
        cfg.delay_base
            .saturating_mul(
                1_u32
                    .checked_shl((pair_failures - cfg.delay_after.max(1)).min(31))
                    .unwrap_or(u32::MAX),
            )
            .min(cfg.delay_max)
    }

    fn answer(&self, a: Admission) -> Admission {
        bump(match a {
            Admission::Allow => &self.counters.allowed,
            Admission::Delay(_) => &self.counters.delayed,
            Admission::Locked { .. } => &self.counters.locked,
            Admission::Throttled { .. } => &self.counters.throttled,
        });
        a
    }

    /// Before verifying credentials: may `ip` try to authenticate as
    /// `key_id` (the claimed key id, possibly empty)? Call exactly once per
    /// attempt: throttle answers consume quota.
    pub fn admit(&self, ip: IpAddr, key_id: &str) -> Admission {
        let now = self.clock.now_ns();
        let src = self.source(ip);
        let pair_h = self.pair_hash(&src, key_id);
        let attack = self.under_attack(now);
        let Some(shard) = self.source_shard(src.shard) else {
            // INVARIANT: shard < shards; refuse rather than panic.
            return self.answer(Admission::Throttled {
                retry_after: self.c.cfg.saturation_hold,
            });
        };
        let (pair_failures, known_pair) = {
            let mut guard = shard.lock();
            let sh = &mut *guard;
            let pair = sh.pairs.get(pair_h);
            if let Some(p) = pair {
                if p.lock.active(now) {
                    return self.answer(Admission::Locked {
                        retry_after: Duration::from_nanos(p.lock.until - now),
                        scope: LockScope::Pair,
                    });
                }
            }
            let pair_tracked = pair.is_some();
            let pair_failures = pair.map_or(0, |p| failures(p.fails, now, &self.c.pair));
            let known_pair = sh.known_pairs.get(pair_h).is_some_and(|t| *t > now);
            let exempt = src.trusted || known_pair;
            let ip_state = sh.ips.get(src.ip_h);
            if !exempt {
                if let Some(s) = ip_state.filter(|s| s.lock.active(now)) {
                    return self.answer(Admission::Locked {
                        retry_after: Duration::from_nanos(s.lock.until - now),
                        scope: LockScope::Ip,
                    });
                }
                if let Some(s) = sh.prefixes.get(src.net_h).filter(|s| s.lock.active(now)) {
                    return self.answer(Admission::Locked {
                        retry_after: Duration::from_nanos(s.lock.until - now),
                        scope: LockScope::Prefix,
                    });
                }
            }
            let ip_failures = ip_state.map_or(0, |s| failures(s.fails, now, &self.c.ip));
            let known_ip = sh.known_ips.get(src.ip_h).is_some_and(|t| *t > now)
                && ip_failures.saturating_mul(2) < self.c.cfg.ip.max_failures;
            if !exempt && !known_ip {
                if sh.saturated_until > now && !pair_tracked {
                    return self.answer(Admission::Throttled {
                        retry_after: Duration::from_nanos(sh.saturated_until - now),
                    });
                }
                if attack {
                    if let Some(retry_after) = self.attack_throttle(sh, &src, now) {
                        return self.answer(Admission::Throttled { retry_after });
                    }
                }
            }
            (pair_failures, known_pair)
        };
        if !src.trusted && !known_pair && !key_id.is_empty() {
            if let Some(retry_after) = self.key_throttle(self.key_hash(key_id), now) {
                return self.answer(Admission::Throttled { retry_after });
            }
        }
        let d = self.delay(pair_failures);
        self.answer(if d.is_zero() {
            Admission::Allow
        } else {
            Admission::Delay(d)
        })
    }

    /// The under-attack per-IP and per-prefix quotas for an unknown source.
    /// Both are evaluated first and consumed only if both allow, so an IP
    /// over its quota does not drain its neighbours' prefix quota.
    fn attack_throttle(&self, sh: &mut SourceShard, src: &Source, now: u64) -> Option<Duration> {
        let ip_tat = sh.ips.get(src.ip_h).and_then(|s| s.throttle);
        let net_tat = sh.prefixes.get(src.net_h).and_then(|s| s.throttle);
        let (by_ip, ip_next) = gcra_step(ip_tat, now, &self.c.attack_ip, 1);
        let (by_net, net_next) = gcra_step(net_tat, now, &self.c.attack_prefix, 1);
        if !(by_ip.is_allowed() && by_net.is_allowed()) {
            let wait = |d: Decision, q: &Quota| match d {
                Decision::Allowed { .. } => Duration::ZERO,
                Decision::Denied { retry_after, .. } => retry_after,
                Decision::Never { .. } | Decision::FailClosed { .. } => q.period(),
            };
            return Some(wait(by_ip, &self.c.attack_ip).max(wait(by_net, &self.c.attack_prefix)));
        }
        let (ip, net) = (src.ip, src.net);
        let stored_ip = sh.ips.upsert(src.ip_h, now, |s| {
            s.at = Some(ip);
            s.throttle = ip_next;
        });
        let stored_net = sh.prefixes.upsert(src.net_h, now, |s| {
            s.at = Some(net);
            s.throttle = net_next;
        });
        if stored_ip.is_none() || stored_net.is_none() {
            // Cannot account for the attempt: refuse it (fail closed).
            let hold = self.c.cfg.saturation_hold;
            sh.saturated_until = now.saturating_add(dur_ns(hold));
            return Some(hold);
        }
        None
    }

    /// The targeted-key quota for a source unknown for that key.
    fn key_throttle(&self, key_h: u64, now: u64) -> Option<Duration> {
        let shard = self.key_shard(key_h)?;
        let mut ks = shard.lock();
        if ks.saturated_until > now && ks.keys.get(key_h).is_none() {
            return Some(Duration::from_nanos(ks.saturated_until - now));
        }
        let q = &self.c.key_unknown;
        ks.keys
            .update(key_h, |k| {
                if k.targeted_until > now {
                    throttle_step(&mut k.unknown, now, q)
                } else {
                    None
                }
            })
            .flatten()
    }

    /// After a failed verification (unknown key, bad signature, bad MFA
    /// code…). Returns the most severe alert this failure raised, if any
    /// (a lock, a targeted key, an attack, saturation).
    pub fn record_failure(&self, ip: IpAddr, key_id: &str) -> Option<Alert> {
        let now = self.clock.now_ns();
        bump(&self.counters.failures);
        let src = self.source(ip);
        let pair_h = self.pair_hash(&src, key_id);
        let key_h = (!key_id.is_empty()).then(|| self.key_hash(key_id));
        let mut alerts: Vec<Alert> = Vec::new();
        if let Some(shard) = self.source_shard(src.shard) {
            let mut guard = shard.lock();
            self.fail_source(&mut guard, &src, pair_h, key_id, key_h, now, &mut alerts);
        }
        if let Some(key_h) = key_h {
            self.fail_key(key_h, key_id, &src, now, &mut alerts);
        }
        self.fail_detect(src.ip_h, key_h, now, &mut alerts);
        // Most severe wins; among equals, the broadest (pushed last:
        // `max_by_key` returns the last maximum).
        let best = alerts.into_iter().max_by_key(|a| a.severity);
        if best.is_some() {
            bump(&self.counters.alerts);
        }
        best
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "private helper taking the precomputed parts of one failure"
    )]
    fn fail_source(
        &self,
        sh: &mut SourceShard,
        src: &Source,
        pair_h: u64,
        key_id: &str,
        key_h: Option<u64>,
        now: u64,
        alerts: &mut Vec<Alert>,
    ) {
        let cfg = &self.c.cfg;
        let mut saturated = false;
        let ip = src.ip;
        let pair = sh.pairs.upsert(pair_h, now, |p| {
            if p.ip.is_none() {
                p.ip = Some(ip);
                p.key = key_h.unwrap_or(0);
                p.key_id = keep_key_id(key_id);
            }
            let full = fail_step(&mut p.fails, now, &self.c.pair);
            if full && !p.lock.active(now) {
                p.fails = None;
                Some((p.lock.engage(now, &cfg.pair_lock), p.lock.strikes))
            } else {
                None
            }
        });
        match pair {
            None => saturated = true,
            Some(Some((d, strikes))) => alerts.push(self.alert(
                kind::PAIR_LOCKED,
                Severity::Info,
                now,
                format!(
                    "{} failed authentications from {ip} as `{key_id}`: pair locked for {}",
                    cfg.pair.max_failures,
                    fmt_duration(d)
                ),
                serde_json::json!({
                    "ip": ip.to_string(), "key_id": key_id,
                    "lock_seconds": d.as_secs(), "strikes": strikes,
                }),
            )),
            Some(None) => {}
        }
        if !src.trusted {
            let ip_lock = sh.ips.upsert(src.ip_h, now, |s| {
                s.at = Some(ip);
                let full = fail_step(&mut s.fails, now, &self.c.ip);
                if full && !s.lock.active(now) {
                    s.fails = None;
                    Some((s.lock.engage(now, &cfg.ip_lock), s.lock.strikes))
                } else {
                    None
                }
            });
            match ip_lock {
                None => saturated = true,
                Some(Some((d, strikes))) => alerts.push(self.alert(
                    kind::IP_LOCKED,
                    Severity::Warning,
                    now,
                    format!(
                        "{} failed authentications from {ip} within {}: IP locked for {}",
                        cfg.ip.max_failures,
                        fmt_duration(cfg.ip.window),
                        fmt_duration(d)
                    ),
                    serde_json::json!({
                        "ip": ip.to_string(), "lock_seconds": d.as_secs(), "strikes": strikes,
                    }),
                )),
                Some(None) => {}
            }
            let net = src.net;
            let net_lock = sh.prefixes.upsert(src.net_h, now, |s| {
                s.at = Some(net);
                let full = fail_step(&mut s.fails, now, &self.c.prefix);
                if full && !s.lock.active(now) {
                    s.fails = None;
                    Some((s.lock.engage(now, &cfg.prefix_lock), s.lock.strikes))
                } else {
                    None
                }
            });
            match net_lock {
                None => saturated = true,
                Some(Some((d, strikes))) => alerts.push(self.alert(
                    kind::PREFIX_LOCKED,
                    Severity::Warning,
                    now,
                    format!(
                        "{} failed authentications from {net} within {}: prefix locked for {}",
                        cfg.prefix.max_failures,
                        fmt_duration(cfg.prefix.window),
                        fmt_duration(d)
                    ),
                    serde_json::json!({
                        "prefix": net.to_string(), "lock_seconds": d.as_secs(),
                        "strikes": strikes,
                    }),
                )),
                Some(None) => {}
            }
        }
        if saturated {
            let was = sh.saturated_until > now;
            sh.saturated_until = now.saturating_add(dur_ns(cfg.saturation_hold));
            if !was {
                alerts.push(self.saturated_alert(now, "source"));
            }
        }
    }

    fn fail_key(&self, key_h: u64, key_id: &str, src: &Source, now: u64, alerts: &mut Vec<Alert>) {
        let Some(shard) = self.key_shard(key_h) else {
            return;
        };
        let cfg = &self.c.cfg;
        let mut ks = shard.lock();
        let r = ks.keys.upsert(key_h, now, |k| {
            if k.fails.is_none_or(|t| t <= now) {
                // An empty bucket starts a new episode.
                k.sources = Default::default();
            }
            k.note_source(src.ip_h);
            let full = fail_step(&mut k.fails, now, &self.c.key);
            let was_targeted = k.targeted_until > now;
            if was_targeted || (full && k.distinct_sources() >= cfg.key_min_sources) {
                k.targeted_until = now.saturating_add(dur_ns(cfg.key_targeted_for));
            }
            (!was_targeted && k.targeted_until > now).then(|| k.distinct_sources())
        });
        match r {
            None => {
                let was = ks.saturated_until > now;
                ks.saturated_until = now.saturating_add(dur_ns(cfg.saturation_hold));
                if !was {
                    alerts.push(self.saturated_alert(now, "key"));
                }
            }
            Some(Some(sources)) => alerts.push(self.alert(
                kind::KEY_TARGETED,
                Severity::Warning,
                now,
                format!(
                    "{}+ failed authentications as `{key_id}` from {sources} sources: \
                     attempts from unknown sources limited",
                    cfg.key.max_failures
                ),
                serde_json::json!({
                    "key_id": key_id, "distinct_sources": sources,
                    "targeted_seconds": cfg.key_targeted_for.as_secs(),
                }),
            )),
            Some(None) => {}
        }
    }

    fn attack_condition(&self, s: &Snapshot) -> bool {
        let cfg = &self.c.cfg;
        let ips = u64::try_from(s.distinct_ips).unwrap_or(u64::MAX);
        let keys = u64::try_from(s.distinct_keys).unwrap_or(u64::MAX);
        let total = u128::from(s.failures) + u128::from(s.new_source_successes);
        ips >= u64::from(cfg.detect_min_ips)
            && keys >= u64::from(cfg.detect_min_keys)
            && u128::from(s.new_source_successes) * 100
                < u128::from(cfg.detect_max_success_percent) * total
    }

    fn fail_detect(&self, ip_h: u64, key_h: Option<u64>, now: u64, alerts: &mut Vec<Alert>) {
        let mut d = self.detect.lock();
        d.failure(ip_h, key_h, now);
        let snap = d.snapshot(now);
        if !self.attack_condition(&snap) {
            return;
        }
        let was = self.under_attack(now);
        self.attack_last.store(now, Ordering::Release);
        if was {
            return;
        }
        self.attack_since.store(now, Ordering::Release);
        let cfg = &self.c.cfg;
        alerts.push(self.alert(
            kind::CREDENTIAL_STUFFING,
            Severity::Critical,
            now,
            format!(
                "credential stuffing: {} failures from {} IPs over {} key ids in {}; \
                 unknown sources throttled",
                snap.failures,
                snap.distinct_ips,
                snap.distinct_keys,
                fmt_duration(cfg.detect_window)
            ),
            serde_json::json!({
                "failures": snap.failures,
                "new_source_successes": snap.new_source_successes,
                "distinct_ips": snap.distinct_ips,
                "distinct_keys": snap.distinct_keys,
                "window_seconds": cfg.detect_window.as_secs(),
            }),
        ));
    }

    fn alert(
        &self,
        kind: &'static str,
        severity: Severity,
        now: u64,
        summary: String,
        details: serde_json::Value,
    ) -> Alert {
        Alert {
            kind,
            severity,
            at_unix_ms: self.unix_ms(now),
            summary,
            details,
        }
    }

    fn saturated_alert(&self, now: u64, table: &str) -> Alert {
        self.alert(
            kind::GUARD_SATURATED,
            Severity::Critical,
            now,
            format!(
                "authentication guard {table} table full of live state: \
                 unknown sources refused for {}",
                fmt_duration(self.c.cfg.saturation_hold)
            ),
            serde_json::json!({ "table": table }),
        )
    }

    /// After a successful verification: resets the pair's failures and
    /// lock history (an active lock stays), marks the pair and the IP
    /// known-good, and counts a new-source success if the pair was not
    /// known-good already.
    pub fn record_success(&self, ip: IpAddr, key_id: &str) {
        let now = self.clock.now_ns();
        bump(&self.counters.successes);
        let src = self.source(ip);
        let pair_h = self.pair_hash(&src, key_id);
        let good_until = now.saturating_add(dur_ns(self.c.cfg.known_good_ttl));
        let was_known = {
            let Some(shard) = self.source_shard(src.shard) else {
                return;
            };
            let mut sh = shard.lock();
            let empty = sh.pairs.update(pair_h, |p| {
                p.fails = None;
                if !p.lock.active(now) {
                    p.lock = Lock::default();
                }
                p.keep_until() <= now
            });
            if empty == Some(true) {
                sh.pairs.remove(pair_h);
            }
            let was_known = sh.known_pairs.get(pair_h).is_some_and(|t| *t > now);
            // Known-good tables evict when full, so these always succeed.
            let _ = sh.known_pairs.upsert(pair_h, now, |t| *t = good_until);
            let _ = sh.known_ips.upsert(src.ip_h, now, |t| *t = good_until);
            was_known
        };
        if !was_known {
            self.detect.lock().new_source_success(now);
        }
    }

    /// Operator unlock; returns how many active locks were lifted. The
    /// matching entries are forgotten whole (see [`Unlock`]).
    pub fn unlock(&self, target: Unlock) -> usize {
        let now = self.clock.now_ns();
        let mut lifted = 0_usize;
        let mut count = |active: bool| {
            if active {
                lifted += 1;
            }
        };
        match target {
            Unlock::Pair { ip, key_id } => {
                let src = self.source(ip);
                let pair_h = self.pair_hash(&src, &key_id);
                if let Some(shard) = self.source_shard(src.shard) {
                    let mut sh = shard.lock();
                    if let Some(p) = sh.pairs.remove(pair_h) {
                        count(p.lock.active(now));
                    }
                }
            }
            Unlock::Ip(ip) => {
                let src = self.source(ip);
                if let Some(shard) = self.source_shard(src.shard) {
                    let mut sh = shard.lock();
                    if let Some(s) = sh.ips.remove(src.ip_h) {
                        count(s.lock.active(now));
                    }
                    sh.pairs.retain_mut(|p| {
                        let hit = p.ip == Some(src.ip);
                        if hit {
                            count(p.lock.active(now));
                        }
                        !hit
                    });
                }
            }
            Unlock::Prefix(net) => {
                let net = match net {
                    IpNet::V6(n) => match n.network().to_ipv4_mapped() {
                        Some(a) if n.prefix_len() >= 96 => {
                            Ipv4Net::new(a, n.prefix_len() - 96).map_or(net, IpNet::V4)
                        }
                        _ => net,
                    },
                    IpNet::V4(_) => net,
                }
                .trunc();
                for shard in self.sources.iter() {
                    let mut sh = shard.0.lock();
                    sh.prefixes.retain_mut(|s| {
                        let hit = s.at.is_some_and(|n| net.contains(&n));
                        if hit {
                            count(s.lock.active(now));
                        }
                        !hit
                    });
                    sh.ips.retain_mut(|s| {
                        let hit = s.at.is_some_and(|a| net.contains(&a));
                        if hit {
                            count(s.lock.active(now));
                        }
                        !hit
                    });
                    sh.pairs.retain_mut(|p| {
                        let hit = p.ip.is_some_and(|a| net.contains(&a));
                        if hit {
                            count(p.lock.active(now));
                        }
                        !hit
                    });
                }
            }
            Unlock::Key(key_id) => {
                let key_h = self.key_hash(&key_id);
                for shard in self.sources.iter() {
                    shard.0.lock().pairs.retain_mut(|p| {
                        let hit = p.key == key_h;
                        if hit {
                            count(p.lock.active(now));
                        }
                        !hit
                    });
                }
                if let Some(shard) = self.key_shard(key_h) {
                    shard.lock().keys.remove(key_h);
                }
            }
            Unlock::All => {
                for shard in self.sources.iter() {
                    let mut sh = shard.0.lock();
                    sh.pairs.retain_mut(|p| {
                        count(p.lock.active(now));
                        false
                    });
                    sh.ips.retain_mut(|s| {
                        count(s.lock.active(now));
                        false
                    });
                    sh.prefixes.retain_mut(|s| {
                        count(s.lock.active(now));
                        false
                    });
                    sh.saturated_until = 0;
                }
                for shard in self.keys.iter() {
                    let mut ks = shard.0.lock();
                    ks.keys.retain_mut(|_| false);
                    ks.saturated_until = 0;
                }
                self.detect.lock().clear();
                self.attack_since.store(NONE, Ordering::Release);
            }
        }
        lifted
    }

    /// Every active lock, at most `limit` of them (pairs first, then IPs,
    /// then prefixes, in no particular order within each).
    pub fn locks(&self, limit: usize) -> Vec<LockInfo> {
        let now = self.clock.now_ns();
        let mut out = Vec::new();
        for shard in self.sources.iter() {
            let sh = shard.0.lock();
            let pairs = sh.pairs.values().filter_map(|p| {
                let ip = p.ip?;
                p.lock.active(now).then(|| LockInfo {
                    scope: LockScope::Pair,
                    source: IpNet::from(ip),
                    key_id: Some(p.key_id.to_string()),
                    retry_after_ms: (p.lock.until - now) / 1_000_000,
                    strikes: p.lock.strikes,
                })
            });
            let ips = sh.ips.values().filter_map(|s| {
                let ip = s.at?;
                s.lock.active(now).then(|| LockInfo {
                    scope: LockScope::Ip,
                    source: IpNet::from(ip),
                    key_id: None,
                    retry_after_ms: (s.lock.until - now) / 1_000_000,
                    strikes: s.lock.strikes,
                })
            });
            let nets = sh.prefixes.values().filter_map(|s| {
                let net = s.at?;
                s.lock.active(now).then(|| LockInfo {
                    scope: LockScope::Prefix,
                    source: net,
                    key_id: None,
                    retry_after_ms: (s.lock.until - now) / 1_000_000,
                    strikes: s.lock.strikes,
                })
            });
            out.extend(
                pairs
                    .chain(ips)
                    .chain(nets)
                    .take(limit.saturating_sub(out.len())),
            );
            if out.len() >= limit {
                break;
            }
        }
        out.sort_by_key(|l| match l.scope {
            LockScope::Pair => 0,
            LockScope::Ip => 1,
            LockScope::Prefix => 2,
        });
        out
    }

    /// Counters, the attack flag and table sizes (O(entries); see
    /// [`GuardStatus`]).
    pub fn status(&self) -> GuardStatus {
        let now = self.clock.now_ns();
        let mut s = GuardStatus::default();
        {
            let mut d = self.detect.lock();
            let snap = d.snapshot(now);
            s.window_failures = snap.failures;
            s.window_new_source_successes = snap.new_source_successes;
            s.distinct_failing_ips = snap.distinct_ips;
            s.distinct_failing_keys = snap.distinct_keys;
        }
        s.under_attack = self.under_attack(now);
        if s.under_attack {
            s.under_attack_since_unix_ms =
                Some(self.unix_ms(self.attack_since.load(Ordering::Acquire)));
        }
        for shard in self.sources.iter() {
            let sh = shard.0.lock();
            s.locked_pairs += sh.pairs.values().filter(|p| p.lock.active(now)).count();
            s.locked_ips += sh.ips.values().filter(|p| p.lock.active(now)).count();
            s.locked_prefixes += sh.prefixes.values().filter(|p| p.lock.active(now)).count();
            s.tracked_pairs += sh.pairs.len();
            s.tracked_ips += sh.ips.len();
            s.tracked_prefixes += sh.prefixes.len();
            s.known_pairs += sh.known_pairs.len();
            s.known_ips += sh.known_ips.len();
            s.saturated |= sh.saturated_until > now;
        }
        for shard in self.keys.iter() {
            let ks = shard.0.lock();
            s.targeted_keys += ks.keys.values().filter(|k| k.targeted_until > now).count();
            s.tracked_keys += ks.keys.len();
            s.saturated |= ks.saturated_until > now;
        }
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.totals = GuardCounters {
            allowed: get(&c.allowed),
            delayed: get(&c.delayed),
            locked: get(&c.locked),
            throttled: get(&c.throttled),
            failures: get(&c.failures),
            successes: get(&c.successes),
            alerts: get(&c.alerts),
        };
        s
    }

    /// Forgets every entry with no state left (expired counts, locks and
    /// history). Not needed for correctness (full tables sweep
    /// themselves); lets a periodic task return memory early.
    pub fn purge(&self) {
        let now = self.clock.now_ns();
        for shard in self.sources.iter() {
            let mut sh = shard.0.lock();
            sh.pairs.sweep(now);
            sh.ips.sweep(now);
            sh.prefixes.sweep(now);
            sh.known_pairs.sweep(now);
            sh.known_ips.sweep(now);
        }
        for shard in self.keys.iter() {
            shard.0.lock().keys.sweep(now);
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3_600 && s.is_multiple_of(3_600) {
        format!("{} h", s / 3_600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else if s >= 1 {
        format!("{s} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_policy_doubles_and_caps() {
        let p = LockPolicy {
            base: Duration::from_secs(60),
            max: Duration::from_secs(300),
            strike_memory: Duration::from_secs(1),
        };
        assert_eq!(p.duration(0), Duration::from_secs(60));
        assert_eq!(p.duration(1), Duration::from_secs(120));
        assert_eq!(p.duration(2), Duration::from_secs(240));
        assert_eq!(p.duration(3), Duration::from_secs(300));
        assert_eq!(p.duration(40), Duration::from_secs(300));
    }

    #[test]
    fn prefixes() {
        let ip: IpAddr = "203.0.113.77".parse().unwrap();
        assert_eq!(prefix_of(ip, 24, 64).to_string(), "203.0.113.0/24");
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(prefix_of(ip, 24, 64).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn key_id_truncation_respects_char_boundaries() {
        let long = "é".repeat(40);
        let kept = keep_key_id(&long);
        assert!(kept.len() <= KEY_ID_KEEP);
        assert!(long.starts_with(&*kept));
    }

    #[test]
    fn config_errors_are_collected() {
        let cfg = AuthGuardConfig {
            pair: FailureLimit {
                max_failures: 0,
                window: Duration::from_secs(1),
            },
            shards: 3,
            detect_max_success_percent: 101,
            ..AuthGuardConfig::default()
        };
        let err = Compiled::new(cfg).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }
}
