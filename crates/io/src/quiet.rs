//! Quiet under attack: at most N log lines of a kind per interval, then one
//! summary line with the count of the rest.
//!
//! A flood of junk calls must not become a flood of log lines: each line
//! costs the core time, fills the disk of whoever keeps the logs and buries
//! the lines that matter. A [`Limit`] lets the first `lines` lines of its
//! kind through in each interval of `per` and counts the rest; when the
//! interval ends it gives one [`Suppressed`] summary, which reads
//!
//! ```text
//! "call failed": 1,234 more lines suppressed in the last 10 s
//! ```
//!
//! ```text
//!   first line of the kind                              start + per
//!   |<-- first `lines` lines: logged -->|<-- the rest: counted -->|
//!                                                                 +-> summary, if any was counted
//!   the next line after it opens a new interval with a fresh allowance
//! ```
//!
//! An interval opens at the first line of its kind and lasts `per`; a line
//! at or after its end belongs to the next one. The summary is due at the
//! instant the interval ends: the housekeeping tick collects it with
//! [`Quiet::poll`] (or [`Limit::poll`]); if the next line of the kind comes
//! first, [`Quiet::check`] hands it over with that line's verdict, so it is
//! never lost, and late by a tick at most. An interval in which nothing was
//! suppressed closes without a summary. At shutdown, [`Quiet::flush`] gives
//! the counts so far.
//!
//! [`Quiet`] holds one [`Limit`] per kind, numbered in the order given.
//!
//! Pure and cheap, like the proxy core it runs beside: time is always a
//! parameter (no clock is read), and deciding a line is a few comparisons
//! on a fixed-size state, with no allocation. What it does not do: write
//! logs (the caller does, with the verdict), or count events for metrics
//! (metrics count every event, logged or not).
//!
//! [`Limit`]: crate::quiet::Limit
//! [`Limit::poll`]: crate::quiet::Limit::poll
//! [`Suppressed`]: crate::quiet::Suppressed
//! [`Quiet`]: crate::quiet::Quiet
//! [`Quiet::poll`]: crate::quiet::Quiet::poll
//! [`Quiet::check`]: crate::quiet::Quiet::check
//! [`Quiet::flush`]: crate::quiet::Quiet::flush

use std::fmt;
use std::time::{Duration, Instant};

/// How many lines of one kind are logged per interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// Lines logged per interval; the rest are counted (0: every line is
    /// counted and only summaries are logged).
    pub lines: u32,
    /// The interval's length, from its first line.
    pub per: Duration,
}

/// The open interval of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    start: Instant,
    passed: u32,
    suppressed: u64,
}

/// The rate limit of one kind of log line.
#[derive(Clone, Debug)]
pub struct Limit {
    name: &'static str,
    allowance: Allowance,
    window: Option<Window>,
}

/// The verdict on one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Check {
    /// Whether to log this line.
    pub log: bool,
    /// The summary of this kind's previous interval, which ended before
    /// this line without being collected by a poll: log it first.
    pub summary: Option<Suppressed>,
}

/// Lines of one kind that were not logged in one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suppressed {
    /// The kind: the message of its lines (`call failed`).
    pub name: &'static str,
    /// Lines counted, not logged.
    pub lines: u64,
    /// When the interval started (its first line).
    pub from: Instant,
    /// When it ended: the instant the summary was due.
    pub until: Instant,
}

impl Suppressed {
    /// The interval's length.
    pub fn interval(&self) -> Duration {
        self.until.saturating_duration_since(self.from)
    }
}

/// `"call failed": 1,234 more lines suppressed in the last 10 s`
impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\": ", self.name)?;
        grouped(f, self.lines)?;
        let lines = if self.lines == 1 { "line" } else { "lines" };
        write!(
            f,
            " more {lines} suppressed in the last {} s",
            self.interval().as_secs_f64()
        )
    }
}

/// `n` with a comma every three digits, written without allocating.
fn grouped(f: &mut fmt::Formatter<'_>, n: u64) -> fmt::Result {
    if n >= 1000 {
        grouped(f, n / 1000)?;
        write!(f, ",{:03}", n % 1000)
    } else {
        write!(f, "{n}")
    }
}

impl Limit {
    /// A limit letting `lines` lines named `name` through per `per`.
    pub const fn new(name: &'static str, lines: u32, per: Duration) -> Self {
        Self {
            name,
            allowance: Allowance { lines, per },
            window: None,
        }
    }

    /// The kind's name (the message of its lines).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its allowance.
    pub fn allowance(&self) -> Allowance {
        self.allowance
    }

    /// One line of this kind at `now`: whether to log it, and the summary
    /// of an earlier interval that ended before it and was not polled.
    pub fn check(&mut self, now: Instant) -> Check {
        let summary = self.expire(now);
        let w = self.window.get_or_insert(Window {
            start: now,
            passed: 0,
            suppressed: 0,
        });
        let log = w.passed < self.allowance.lines;
        if log {
            w.passed += 1;
        } else {
            w.suppressed = w.suppressed.saturating_add(1);
        }
        Check { log, summary }
    }

    /// Close the interval if it has ended by `now`; its summary, if it
    /// suppressed any line.
    pub fn poll(&mut self, now: Instant) -> Option<Suppressed> {
        self.expire(now)
    }

    /// Close the interval at `now`, ended or not (at shutdown): its
    /// summary, up to `now`, if it suppressed any line.
    pub fn flush(&mut self, now: Instant) -> Option<Suppressed> {
        let w = self.window.take()?;
        let end = w.start.checked_add(self.allowance.per).unwrap_or(now);
        (w.suppressed > 0).then_some(Suppressed {
            name: self.name,
            lines: w.suppressed,
            from: w.start,
            until: now.min(end).max(w.start),
        })
    }

    /// When a summary is due: the end of the open interval, if it has
    /// suppressed a line.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let w = self.window.filter(|w| w.suppressed > 0)?;
        w.start.checked_add(self.allowance.per)
    }

    fn expire(&mut self, now: Instant) -> Option<Suppressed> {
        let w = self.window?;
        // An interval too long to end (Instant overflow) never does.
        let until = w.start.checked_add(self.allowance.per)?;
        if now < until {
            return None;
        }
        self.window = None;
        (w.suppressed > 0).then_some(Suppressed {
            name: self.name,
            lines: w.suppressed,
            from: w.start,
            until,
        })
    }
}

/// One [`Limit`] per kind of line, numbered in the order given.
#[derive(Clone, Debug, Default)]
pub struct Quiet {
    limits: Vec<Limit>,
}

impl Quiet {
    /// Limits for kinds `0, 1, 2 ...`, in this order.
    pub fn new(limits: impl IntoIterator<Item = Limit>) -> Self {
        Self {
            limits: limits.into_iter().collect(),
        }
    }

    /// One line of kind `kind` at `now` (see [`Limit::check`]). A kind
    /// with no limit is always logged.
    pub fn check(&mut self, kind: usize, now: Instant) -> Check {
        match self.limits.get_mut(kind) {
            Some(l) => l.check(now),
            None => Check {
                log: true,
                summary: None,
            },
        }
    }

    /// The next summary due at `now`, with its kind; call until `None`
    /// (from the housekeeping tick).
    pub fn poll(&mut self, now: Instant) -> Option<(usize, Suppressed)> {
        self.limits
            .iter_mut()
            .enumerate()
            .find_map(|(i, l)| l.poll(now).map(|s| (i, s)))
    }

    /// Close every interval at `now`, ended or not (at shutdown): the next
    /// summary, with its kind; call until `None`.
    pub fn flush(&mut self, now: Instant) -> Option<(usize, Suppressed)> {
        self.limits
            .iter_mut()
            .enumerate()
            .find_map(|(i, l)| l.flush(now).map(|s| (i, s)))
    }

    /// When the next summary is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.limits.iter().filter_map(Limit::poll_timeout).min()
    }

    /// The limit of `kind`.
    pub fn limit(&self, kind: usize) -> Option<&Limit> {
        self.limits.get(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_S: Duration = Duration::from_secs(10);

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Feed `n` lines at `at`: how many were logged.
    fn lines(l: &mut Limit, at: Instant, n: u32) -> u32 {
        (0..n)
            .map(|_| {
                let c = l.check(at);
                assert_eq!(c.summary, None);
                u32::from(c.log)
            })
            .sum()
    }

    #[test]
    fn the_first_n_lines_pass_and_the_next_is_suppressed() {
        let t0 = Instant::now();
        let mut l = Limit::new("call failed", 20, TEN_S);
        for i in 0..20 {
            assert_eq!(
                l.check(ms(t0, i)),
                Check {
                    log: true,
                    summary: None
                },
                "line {}",
                i + 1
            );
        }
        assert_eq!(
            l.check(ms(t0, 20)),
            Check {
                log: false,
                summary: None
            },
            "the 21st"
        );
        assert_eq!(l.poll_timeout(), Some(ms(t0, 10_000)));
    }

    #[test]
    fn the_summary_has_the_exact_count_at_the_exact_end() {
        let t0 = Instant::now();
        let mut l = Limit::new("call failed", 20, TEN_S);
        assert_eq!(lines(&mut l, t0, 20), 20);
        assert_eq!(lines(&mut l, ms(t0, 5_000), 1_234), 0);
        let end = ms(t0, 10_000);
        assert_eq!(l.poll_timeout(), Some(end));
        assert_eq!(l.poll(end - Duration::from_nanos(1)), None, "not yet");
        let s = l.poll(end).expect("due at the end of the interval");
        assert_eq!(
            s,
            Suppressed {
                name: "call failed",
                lines: 1_234,
                from: t0,
                until: end,
            }
        );
        assert_eq!(s.interval(), TEN_S);
        assert_eq!(
            s.to_string(),
            "\"call failed\": 1,234 more lines suppressed in the last 10 s"
        );
        assert_eq!(l.poll(end), None, "given once");
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn a_new_interval_starts_fresh() {
        let t0 = Instant::now();
        let mut l = Limit::new("trunk full: skipped, call overflows to the next", 3, TEN_S);
        assert_eq!(lines(&mut l, t0, 5), 3);
        assert!(l.poll(ms(t0, 10_000)).is_some());
        // The next line opens a new interval, at its own time.
        let t1 = ms(t0, 12_345);
        assert_eq!(lines(&mut l, t1, 4), 3);
        assert_eq!(l.poll(ms(t1, 9_999)), None);
        let s = l.poll(ms(t1, 10_000)).unwrap();
        assert_eq!((s.lines, s.from, s.until), (1, t1, ms(t1, 10_000)));
        assert_eq!(
            s.to_string(),
            "\"trunk full: skipped, call overflows to the next\": 1 more line suppressed in the \
             last 10 s"
        );
    }

    #[test]
    fn a_line_after_the_interval_brings_its_summary_and_opens_the_next() {
        let t0 = Instant::now();
        let mut l = Limit::new("call failed", 2, TEN_S);
        assert_eq!(lines(&mut l, t0, 7), 2);
        // No poll in between: the line at the end of the interval belongs
        // to the next one, and carries the summary of this one.
        let end = ms(t0, 10_000);
        let c = l.check(end);
        assert!(c.log, "first of a fresh interval");
        assert_eq!(
            c.summary,
            Some(Suppressed {
                name: "call failed",
                lines: 5,
                from: t0,
                until: end,
            })
        );
        assert_eq!(lines(&mut l, end, 1), 1);
        assert_eq!(lines(&mut l, end, 1), 0);
        assert_eq!(l.poll_timeout(), Some(ms(t0, 20_000)));
    }

    #[test]
    fn an_interval_without_suppression_ends_silently() {
        let t0 = Instant::now();
        let mut l = Limit::new("call failed", 20, TEN_S);
        assert_eq!(lines(&mut l, t0, 20), 20);
        assert_eq!(l.poll_timeout(), None, "nothing to summarise");
        assert_eq!(l.poll(ms(t0, 10_000)), None);
        // Closed: the next line opens a fresh interval even at once.
        assert_eq!(lines(&mut l, ms(t0, 10_000), 20), 20);
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        let t0 = Instant::now();
        let s = |lines, per| Suppressed {
            name: "x",
            lines,
            from: t0,
            until: t0 + per,
        };
        assert_eq!(
            s(999, TEN_S).to_string(),
            "\"x\": 999 more lines suppressed in the last 10 s"
        );
        assert_eq!(
            s(1_000, Duration::from_millis(500)).to_string(),
            "\"x\": 1,000 more lines suppressed in the last 0.5 s"
        );
        assert_eq!(
            s(12_345_678, Duration::from_secs(60)).to_string(),
            "\"x\": 12,345,678 more lines suppressed in the last 60 s"
        );
    }

    #[test]
    fn kinds_have_their_own_allowances() {
        let t0 = Instant::now();
        let mut q = Quiet::new([
            Limit::new("call failed", 2, TEN_S),
            Limit::new("emergency call failed", 5, TEN_S),
        ]);
        let logged = |q: &mut Quiet, kind, n| -> u32 {
            (0..n).map(|_| u32::from(q.check(kind, t0).log)).sum()
        };
        assert_eq!(logged(&mut q, 0, 10), 2);
        assert_eq!(logged(&mut q, 1, 10), 5, "not used up by the other kind");
        assert_eq!(logged(&mut q, 7, 10), 10, "a kind with no limit is logged");
        assert_eq!(q.limit(1).map(Limit::name), Some("emergency call failed"));
        assert_eq!(q.poll_timeout(), Some(ms(t0, 10_000)));
        assert_eq!(q.poll(ms(t0, 9_999)), None);
        let end = ms(t0, 10_000);
        let got: Vec<(usize, u64)> = std::iter::from_fn(|| q.poll(end))
            .map(|(k, s)| (k, s.lines))
            .collect();
        assert_eq!(got, [(0, 8), (1, 5)]);
        assert_eq!(q.poll_timeout(), None);
    }

    #[test]
    fn flushing_at_shutdown_summarises_up_to_then() {
        let t0 = Instant::now();
        let mut q = Quiet::new([
            Limit::new("call failed", 1, TEN_S),
            Limit::new("hedge lost", 1, TEN_S),
        ]);
        for _ in 0..4 {
            let _ = q.check(0, t0);
        }
        let _ = q.check(1, t0);
        let stop = ms(t0, 2_500);
        let s = q.flush(stop).map(|(k, s)| (k, s.lines, s.until));
        assert_eq!(s, Some((0, 3, stop)));
        assert_eq!(
            q.limit(0).map(|l| l.allowance()),
            Some(Allowance {
                lines: 1,
                per: TEN_S
            })
        );
        assert_eq!(q.flush(stop), None, "nothing suppressed of the other kind");
        assert_eq!(q.poll_timeout(), None);
        assert!(q.check(1, stop).log, "closed: a fresh interval");
    }

    #[test]
    fn a_zero_allowance_only_summarises() {
        let t0 = Instant::now();
        let mut l = Limit::new("x", 0, TEN_S);
        assert_eq!(lines(&mut l, t0, 3), 0);
        assert_eq!(l.poll(ms(t0, 10_000)).map(|s| s.lines), Some(3));
    }
}
