//! Time for executions.
//!
//! The virtual clock runs at real speed while any branch of the execution is working
//! (so a Lambda handler doing real network I/O sees honest timeouts) and jumps straight
//! to the next timer once every branch is waiting: a Wait of six hours, a retry backoff
//! or a task deadline then passes at once. It never uses tokio's paused time, which
//! would make the handlers' own I/O timeouts fire spuriously.
//!
//! The real-time clock sleeps for real, divided by a scale factor (60 makes a minute of
//! workflow time pass in a second), for demos and benchmarks.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

/// How long the virtual clock lets the runtime settle before it jumps: a branch that
/// just finished may be about to wake its parent.
const SETTLE: Duration = Duration::from_micros(300);

/// A clock shared by everything in one execution.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.mode {
            Mode::Virtual(_) => write!(f, "Clock::Virtual"),
            Mode::Real { scale } => write!(f, "Clock::Real(x{scale})"),
        }
    }
}

struct Inner {
    start_wall: DateTime<Utc>,
    start_instant: Instant,
    mode: Mode,
}

enum Mode {
    Virtual(Mutex<VirtualState>),
    Real { scale: f64 },
}

#[derive(Default)]
struct VirtualState {
    /// Time skipped so far, in microseconds.
    skipped_micros: i64,
    /// Branches currently doing work.
    active: usize,
    /// Changes whenever `active` does; a pending jump is dropped if it moved.
    generation: u64,
    /// Pending timers by (wake time in micros since start, id).
    timers: BTreeMap<(i64, u64), Timer>,
    next_id: u64,
    jump_scheduled: bool,
}

struct Timer {
    wake: Option<oneshot::Sender<()>>,
    /// Whether the owner went idle to wait for this timer (and so becomes active
    /// again when it fires).
    owner_idle: bool,
}

impl Default for Clock {
    fn default() -> Self {
        Self::virtual_now()
    }
}

impl Clock {
    /// A virtual clock starting at the current time.
    pub fn virtual_now() -> Self {
        Self::virtual_at(Utc::now())
    }

    /// A virtual clock starting at `start`.
    pub fn virtual_at(start: DateTime<Utc>) -> Self {
        Self::with_mode(start, Mode::Virtual(Mutex::default()))
    }

    /// A real-time clock; `scale` workflow seconds pass per real second.
    pub fn real_time(scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        Self::with_mode(Utc::now(), Mode::Real { scale })
    }

    fn with_mode(start: DateTime<Utc>, mode: Mode) -> Self {
        Self {
            inner: Arc::new(Inner {
                start_wall: start,
                start_instant: Instant::now(),
                mode,
            }),
        }
    }

    /// Whether this is the virtual clock.
    pub fn is_virtual(&self) -> bool {
        matches!(self.inner.mode, Mode::Virtual(_))
    }

    fn elapsed_real_micros(&self) -> i64 {
        i64::try_from(self.inner.start_instant.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    fn micros_now(&self, state: Option<&VirtualState>) -> i64 {
        match &self.inner.mode {
            Mode::Virtual(_) => self.elapsed_real_micros() + state.map_or(0, |s| s.skipped_micros),
            Mode::Real { scale } => (self.elapsed_real_micros() as f64 * scale) as i64,
        }
    }

    fn lock(&self) -> Option<MutexGuard<'_, VirtualState>> {
        match &self.inner.mode {
            Mode::Virtual(m) => Some(m.lock().unwrap_or_else(PoisonError::into_inner)),
            Mode::Real { .. } => None,
        }
    }

    /// The current workflow time.
    pub fn now(&self) -> DateTime<Utc> {
        let state = self.lock();
        let micros = self.micros_now(state.as_deref());
        self.inner.start_wall + chrono::Duration::microseconds(micros)
    }

    fn to_micros(&self, at: DateTime<Utc>) -> i64 {
        (at - self.inner.start_wall)
            .num_microseconds()
            .unwrap_or(i64::MAX)
    }

    /// Marks one more branch as working until the guard is dropped.
    pub fn activate(&self) -> ActiveGuard {
        if let Some(mut state) = self.lock() {
            state.active += 1;
            state.generation += 1;
        }
        ActiveGuard {
            clock: self.clone(),
        }
    }

    fn deactivate(&self) {
        let schedule = match self.lock() {
            Some(mut state) => {
                state.active = state.active.saturating_sub(1);
                state.generation += 1;
                self.wants_jump(&mut state)
            }
            None => false,
        };
        if schedule {
            self.schedule_jump();
        }
    }

    fn wants_jump(&self, state: &mut VirtualState) -> bool {
        if state.active == 0 && !state.timers.is_empty() && !state.jump_scheduled {
            state.jump_scheduled = true;
            true
        } else {
            false
        }
    }

    fn schedule_jump(&self) {
        let clock = self.clone();
        let generation = self.lock().map_or(0, |s| s.generation);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    tokio::time::sleep(SETTLE).await;
                    clock.jump(generation);
                });
            }
            Err(_) => clock.jump(generation),
        }
    }

    /// Moves virtual time to the earliest timer and fires it, if nothing has started
    /// working since the jump was scheduled.
    fn jump(&self, generation: u64) {
        let Some(mut state) = self.lock() else {
            return;
        };
        state.jump_scheduled = false;
        if state.active != 0 {
            return;
        }
        if state.generation != generation {
            // Something woke and went back to sleep meanwhile: look again later.
            if self.wants_jump(&mut state) {
                drop(state);
                self.schedule_jump();
            }
            return;
        }
        let Some((&(wake, _), _)) = state.timers.first_key_value() else {
            return;
        };
        let now = self.micros_now(Some(&state));
        if wake > now {
            state.skipped_micros += wake - now;
        }
        let now = self.micros_now(Some(&state));
        let due: Vec<(i64, u64)> = state
            .timers
            .range(..=(now, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(mut timer) = state.timers.remove(&key) {
                if timer.owner_idle {
                    state.active += 1;
                    state.generation += 1;
                }
                if let Some(tx) = timer.wake.take() {
                    let _ = tx.send(());
                }
            }
        }
    }

    fn register(
        &self,
        at: DateTime<Utc>,
        owner_idle: bool,
    ) -> Option<((i64, u64), oneshot::Receiver<()>)> {
        let mut state = self.lock()?;
        let (tx, rx) = oneshot::channel();
        let id = state.next_id;
        state.next_id += 1;
        let key = (self.to_micros(at), id);
        state.timers.insert(
            key,
            Timer {
                wake: Some(tx),
                owner_idle,
            },
        );
        if owner_idle {
            state.active = state.active.saturating_sub(1);
            state.generation += 1;
        }
        let schedule = self.wants_jump(&mut state);
        drop(state);
        if schedule {
            self.schedule_jump();
        }
        Some((key, rx))
    }

    /// Removes a timer that did not fire; returns whether it was still pending.
    fn unregister(&self, key: (i64, u64)) -> bool {
        self.lock()
            .map(|mut state| state.timers.remove(&key).is_some())
            .unwrap_or(false)
    }

    fn real_wait(&self, at: DateTime<Utc>) -> Duration {
        let remaining = self.to_micros(at) - self.micros_now(self.lock().as_deref());
        let remaining = u64::try_from(remaining.max(0)).unwrap_or(0);
        match &self.inner.mode {
            Mode::Real { scale } => Duration::from_micros((remaining as f64 / scale) as u64),
            Mode::Virtual(_) => Duration::from_micros(remaining),
        }
    }

    /// The calling branch waits, idle, until `at` or until `work` completes, whichever
    /// is first. Returns `Some` with the work's output if it completed first.
    /// Cancellation-safe: dropping the future leaves the counts balanced.
    pub async fn idle_until<F: Future>(&self, at: DateTime<Utc>, work: F) -> Option<F::Output> {
        let real = tokio::time::sleep(self.real_wait(at));
        match self.register(at, true) {
            Some((key, rx)) => {
                let _timer = TimerGuard {
                    clock: self,
                    key,
                    owner_idle: true,
                };
                tokio::select! {
                    out = work => Some(out),
                    _ = rx => None,
                    () = real => None,
                }
            }
            None => tokio::select! {
                out = work => Some(out),
                () = real => None,
            },
        }
    }

    /// The calling branch waits, idle, for `work` with no deadline.
    pub async fn idle<F: Future>(&self, work: F) -> F::Output {
        let _idle = match self.lock() {
            Some(mut state) => {
                state.active = state.active.saturating_sub(1);
                state.generation += 1;
                let schedule = self.wants_jump(&mut state);
                drop(state);
                if schedule {
                    self.schedule_jump();
                }
                Some(IdleGuard { clock: self })
            }
            None => None,
        };
        work.await
    }

    fn reactivate(&self) {
        if let Some(mut state) = self.lock() {
            state.active += 1;
            state.generation += 1;
        }
    }

    /// Sleeps (idle) until `at`.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        let _ = self.idle_until(at, std::future::pending::<()>()).await;
    }

    /// Sleeps (idle) for a number of workflow seconds.
    pub async fn sleep(&self, seconds: f64) {
        let at = self.now() + chrono::Duration::microseconds((seconds.max(0.0) * 1e6) as i64);
        self.sleep_until(at).await;
    }

    /// Runs `work` while the branch stays active, giving up at `at`. Returns `None` on
    /// the deadline.
    pub async fn deadline<F: Future>(&self, at: DateTime<Utc>, work: F) -> Option<F::Output> {
        let real = tokio::time::sleep(self.real_wait(at));
        match self.register(at, false) {
            Some((key, rx)) => {
                let _timer = TimerGuard {
                    clock: self,
                    key,
                    owner_idle: false,
                };
                tokio::select! {
                    out = work => Some(out),
                    _ = rx => None,
                    () = real => None,
                }
            }
            None => tokio::select! {
                out = work => Some(out),
                () = real => None,
            },
        }
    }
}

/// Removes a timer that did not fire; an idle owner becomes active again, unless the
/// clock already counted it so when the timer fired.
struct TimerGuard<'a> {
    clock: &'a Clock,
    key: (i64, u64),
    owner_idle: bool,
}

impl Drop for TimerGuard<'_> {
    fn drop(&mut self) {
        if self.clock.unregister(self.key) && self.owner_idle {
            self.clock.reactivate();
        }
    }
}

/// Makes an idle branch active again when its wait ends, or is cancelled.
struct IdleGuard<'a> {
    clock: &'a Clock,
}

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.clock.reactivate();
    }
}

/// Counts a branch as working while alive.
pub struct ActiveGuard {
    clock: Clock,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.clock.deactivate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_sleep_passes_instantly() {
        let clock = Clock::virtual_now();
        let _active = clock.activate();
        let before = clock.now();
        let real = Instant::now();
        clock.sleep(6.0 * 3600.0).await;
        assert!(real.elapsed() < Duration::from_secs(2));
        let slept = clock.now() - before;
        assert!(slept >= chrono::Duration::hours(6), "{slept}");
        assert!(slept < chrono::Duration::hours(6) + chrono::Duration::seconds(2));
    }

    #[tokio::test]
    async fn concurrent_sleepers_share_virtual_time() {
        let clock = Clock::virtual_now();
        let start = clock.now();
        let a = clock.activate();
        let b = clock.activate();
        let (ca, cb) = (clock.clone(), clock.clone());
        let ta = tokio::spawn(async move {
            let _a = a;
            ca.sleep(100.0).await;
            ca.now()
        });
        let tb = tokio::spawn(async move {
            let _b = b;
            cb.sleep(50.0).await;
            cb.now()
        });
        let (ta, tb) = (ta.await.unwrap(), tb.await.unwrap());
        assert!(tb - start >= chrono::Duration::seconds(50));
        assert!(tb - start < chrono::Duration::seconds(52));
        assert!(ta - start >= chrono::Duration::seconds(100));
        assert!(ta - start < chrono::Duration::seconds(102));
    }

    #[tokio::test]
    async fn deadline_does_not_jump_while_work_is_active() {
        let clock = Clock::virtual_now();
        let _active = clock.activate();
        let at = clock.now() + chrono::Duration::seconds(3600);
        let out = clock
            .deadline(at, async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                7
            })
            .await;
        assert_eq!(out, Some(7));
    }

    #[tokio::test]
    async fn deadline_fires_when_everything_is_idle() {
        let clock = Clock::virtual_now();
        let _active = clock.activate();
        let at = clock.now() + chrono::Duration::seconds(3600);
        let c = clock.clone();
        let out = clock
            .deadline(
                at,
                async move { c.idle(std::future::pending::<()>()).await },
            )
            .await;
        assert_eq!(out, None);
        assert!(clock.now() >= at);
    }

    #[tokio::test]
    async fn real_time_clock_scales_sleep() {
        let clock = Clock::real_time(1000.0);
        let real = Instant::now();
        clock.sleep(5.0).await;
        let took = real.elapsed();
        assert!(took >= Duration::from_millis(4), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
}
