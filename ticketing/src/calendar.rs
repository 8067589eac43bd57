//! Time in a branch's own time zone: which day a moment belongs to (ticket
//! numbers restart at local midnight), whether the branch is open, and when
//! its day ends (the day close).
//!
//! Everything takes the moment as an argument (milliseconds since the
//! epoch), so the rules are tested on any date, DST change days included.

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

fn local(tz: Tz, at: Millis) -> DateTime<Tz> {
    tz.from_utc_datetime(
        &DateTime::<Utc>::from_timestamp_millis(at)
            .unwrap_or_default()
            .naive_utc(),
    )
}

/// The branch-local day of `at`, as `YYYY-MM-DD`.
pub fn day_of(tz: Tz, at: Millis) -> String {
    local(tz, at).date_naive().format("%Y-%m-%d").to_string()
}

/// The first moment at or after the local wall-clock time `t` in `tz`: the
/// time itself, the first of the two when the clocks go back, and the end
/// of the gap when they go forward (02:30 on a spring-forward day in Warsaw
/// is 03:00).
fn moment(tz: Tz, t: NaiveDateTime) -> Millis {
    let mut probe = t;
    // A gap is at most a few hours long; step through it a minute at a time.
    for _ in 0..(24 * 60) {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(x) => return x.timestamp_millis(),
            LocalResult::Ambiguous(first, _) => return first.timestamp_millis(),
            LocalResult::None => probe += chrono::Duration::minutes(1),
        }
    }
    tz.from_utc_datetime(&t).timestamp_millis()
}

/// The local day before `day` (`YYYY-MM-DD`).
pub fn previous_day(day: &str) -> Option<String> {
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some(d.pred_opt()?.format("%Y-%m-%d").to_string())
}

/// Opening hours for one weekday: `[open, close)` in local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub open: NaiveTime,
    /// `None` means midnight at the end of the day.
    pub close: Option<NaiveTime>,
}

impl Hours {
    /// Parses `HH:MM-HH:MM` (`24:00` for the end of the day).
    pub fn parse(s: &str) -> Option<Hours> {
        let (a, b) = s.trim().split_once('-')?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").ok();
        let open = time(a)?;
        let close = if b.trim() == "24:00" {
            None
        } else {
            Some(time(b)?)
        };
        if close.is_some_and(|c| c <= open) {
            return None;
        }
        Some(Hours { open, close })
    }
}

/// A week of opening hours, Monday first; `None`: closed that day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Week(pub [Option<Hours>; 7]);

impl Week {
    /// Open every day, all day.
    pub fn always() -> Week {
        let all = Hours {
            open: NaiveTime::MIN,
            close: None,
        };
        Week([Some(all); 7])
    }

    /// When the branch-local `day` (`YYYY-MM-DD`) ends: at its closing
    /// time, or at the following local midnight when the branch is open
    /// until 24:00 or closed that day.
    pub fn day_end(&self, tz: Tz, day: &str) -> Option<Millis> {
        let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let close = self.0[d.weekday().num_days_from_monday() as usize].and_then(|h| h.close);
        Some(match close {
            Some(c) => moment(tz, d.and_time(c)),
            None => moment(tz, d.succ_opt()?.and_time(NaiveTime::MIN)),
        })
    }

    /// The newest branch-local day that has ended at `at`: today once its
    /// closing time has passed, else yesterday. Its end moment too.
    pub fn last_ended_day(&self, tz: Tz, at: Millis) -> (String, Millis) {
        let today = day_of(tz, at);
        match self.day_end(tz, &today) {
            Some(end) if end <= at => (today, end),
            _ => {
                let yesterday = previous_day(&today).unwrap_or_default();
                let end = self.day_end(tz, &yesterday).unwrap_or(at);
                (yesterday, end)
            }
        }
    }

    pub fn is_open(&self, tz: Tz, at: Millis) -> bool {
        let t = local(tz, at);
        let day = t.weekday().num_days_from_monday() as usize;
        match self.0[day] {
            Some(h) => t.time() >= h.open && h.close.is_none_or(|c| t.time() < c),
            None => false,
        }
    }
}

/// The weekday names a config uses, Monday first.
pub const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> Millis {
        tz.with_ymd_and_hms(y, m, d, h, min, s)
            .earliest()
            .expect("a local time that exists")
            .timestamp_millis()
    }

    #[test]
    fn the_day_turns_at_local_midnight_also_on_dst_change_days() {
        let w = chrono_tz::Europe::Warsaw;
        // Spring forward (29 March 2026, 02:00 → 03:00): a 23-hour day.
        assert_eq!(day_of(w, ms(w, 2026, 3, 28, 23, 59, 59)), "2026-03-28");
        assert_eq!(day_of(w, ms(w, 2026, 3, 29, 0, 0, 0)), "2026-03-29");
        assert_eq!(day_of(w, ms(w, 2026, 3, 29, 23, 59, 59)), "2026-03-29");
        assert_eq!(day_of(w, ms(w, 2026, 3, 30, 0, 0, 0)), "2026-03-30");
        let start = ms(w, 2026, 3, 29, 0, 0, 0);
        let next = ms(w, 2026, 3, 30, 0, 0, 0);
        assert_eq!(next - start, 23 * 3_600_000);
        // Fall back (25 October 2026, 03:00 → 02:00): a 25-hour day.
        let start = ms(w, 2026, 10, 25, 0, 0, 0);
        let next = ms(w, 2026, 10, 26, 0, 0, 0);
        assert_eq!(next - start, 25 * 3_600_000);
        assert_eq!(day_of(w, next - 1), "2026-10-25");
        assert_eq!(day_of(w, next), "2026-10-26");
        // 23:30 UTC is already tomorrow in Warsaw (UTC+1 in winter).
        let utc = Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(day_of(w, utc), "2026-11-26");
        assert_eq!(day_of(chrono_tz::UTC, utc), "2026-11-25");
    }

    #[test]
    fn opening_hours_follow_local_time() {
        let w = chrono_tz::Europe::Warsaw;
        let mut week = Week::default();
        week.0[0] = Hours::parse("08:00-18:00"); // Monday
        week.0[5] = Hours::parse("09:00-24:00"); // Saturday
                                                 // Monday 23 November 2026.
        assert!(!week.is_open(w, ms(w, 2026, 11, 23, 7, 59, 59)));
        assert!(week.is_open(w, ms(w, 2026, 11, 23, 8, 0, 0)));
        assert!(!week.is_open(w, ms(w, 2026, 11, 23, 18, 0, 0)));
        assert!(
            !week.is_open(w, ms(w, 2026, 11, 24, 12, 0, 0)),
            "closed on Tuesday"
        );
        assert!(week.is_open(w, ms(w, 2026, 11, 28, 23, 59, 0)));
        assert!(Week::always().is_open(w, ms(w, 2026, 11, 24, 3, 0, 0)));
        assert_eq!(Hours::parse("18:00-08:00"), None);
        assert_eq!(Hours::parse("8-18"), None);
    }

    #[test]
    fn a_day_ends_at_its_closing_time_or_at_midnight_also_on_dst_days() {
        let w = chrono_tz::Europe::Warsaw;
        let mut week = Week::always();
        week.0[0] = Hours::parse("08:00-18:00"); // Monday
        week.0[6] = Hours::parse("01:00-02:30"); // Sunday (odd, for the DST gap)
        week.0[5] = None; // closed on Saturday
                          // Monday 23 November 2026: at 18:00.
        assert_eq!(
            week.day_end(w, "2026-11-23"),
            Some(ms(w, 2026, 11, 23, 18, 0, 0))
        );
        // Tuesday, open until 24:00: at the next local midnight.
        assert_eq!(
            week.day_end(w, "2026-11-24"),
            Some(ms(w, 2026, 11, 25, 0, 0, 0))
        );
        // Saturday, closed: at the end of the day.
        assert_eq!(
            week.day_end(w, "2026-11-28"),
            Some(ms(w, 2026, 11, 29, 0, 0, 0))
        );
        // Sunday 29 March 2026: 02:30 does not exist (02:00 → 03:00); the
        // day ends when the clocks jump, at 03:00 CEST.
        assert_eq!(
            week.day_end(w, "2026-03-29"),
            Some(ms(w, 2026, 3, 29, 3, 0, 0))
        );
        // Sunday 25 October 2026: 02:30 comes twice; the first one.
        let first = ms(w, 2026, 10, 25, 2, 30, 0);
        assert_eq!(week.day_end(w, "2026-10-25"), Some(first));
        assert_eq!(
            first,
            Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0)
                .unwrap()
                .timestamp_millis(),
            "02:30 CEST"
        );
        // The newest ended day: Monday before 18:00 it is Sunday.
        let (day, end) = week.last_ended_day(w, ms(w, 2026, 11, 23, 17, 59, 59));
        assert_eq!(
            (day.as_str(), end),
            ("2026-11-22", ms(w, 2026, 11, 22, 2, 30, 0))
        );
        let (day, end) = week.last_ended_day(w, ms(w, 2026, 11, 23, 18, 0, 0));
        assert_eq!(
            (day.as_str(), end),
            ("2026-11-23", ms(w, 2026, 11, 23, 18, 0, 0))
        );
        assert_eq!(previous_day("2026-03-01").as_deref(), Some("2026-02-28"));
        assert_eq!(previous_day("nonsense"), None);
    }
}
