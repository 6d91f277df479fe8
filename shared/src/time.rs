//! The clinic's time zone: how a local date or time of day that a person
//! sees or types maps to the UTC instants that are stored and sent.
//!
//! Terms:
//! - **clinic zone**: the IANA time zone the clinic works in (a server
//!   setting sent to every client). Everything a person sees or types is in
//!   it; [`Timestamp`]s stay UTC.
//! - **local day**: a calendar date in the clinic zone, from its first
//!   instant to the first instant of the next date. Around a daylight-saving
//!   change a local day lasts 23 or 25 hours.
//! - **skipped time**: a local time that does not exist on a date (the hour
//!   the clocks jump over in spring). **repeated time**: one that exists
//!   twice (the hour the clocks go back over in autumn); it means the first
//!   of the two, as people reading a schedule expect.
//!
//! The arithmetic is jiff's, with its bundled copy of the time-zone
//! database, so a server and every desk agree whatever their own machines
//! have installed.

use crate::model::Timestamp;
use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// A time zone that is not in the time-zone database, or a date it cannot
/// represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// The name is not a known IANA time zone.
    #[error(
        "`{0}` is not a known time zone; use an IANA name such as Europe/Berlin or America/New_York"
    )]
    Unknown(String),
    /// The date or time is outside the range the zone arithmetic handles.
    #[error("{0} is out of range")]
    OutOfRange(String),
}

/// The clinic's time zone, by IANA name.
#[derive(Debug, Clone)]
pub struct ClinicZone {
    name: String,
    tz: TimeZone,
}

impl PartialEq for ClinicZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// How a local date and time mapped to an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum LocalTimeKind {
    /// The time exists once on that date.
    Exact,
    /// The clocks skip this time on that date (spring forward); the instant
    /// given is where the same clock reading lands after the jump.
    Skipped,
    /// The time happens twice on that date (autumn); the instant given is
    /// the first.
    Repeated,
}

/// An instant for a local date and time in the clinic zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct LocalInstant {
    /// The UTC instant.
    pub instant: Timestamp,
    /// Whether the local time was exact, skipped or repeated.
    pub kind: LocalTimeKind,
}

fn civil_date(date: NaiveDate) -> Result<jiff::civil::Date, ZoneError> {
    let out_of_range = || ZoneError::OutOfRange(date.to_string());
    let year = i16::try_from(date.year()).map_err(|_| out_of_range())?;
    let month = i8::try_from(date.month()).map_err(|_| out_of_range())?;
    let day = i8::try_from(date.day()).map_err(|_| out_of_range())?;
    jiff::civil::Date::new(year, month, day).map_err(|_| out_of_range())
}

fn to_timestamp(t: jiff::Timestamp) -> Result<Timestamp, ZoneError> {
    Timestamp::from_unix(t.as_second()).ok_or_else(|| ZoneError::OutOfRange(t.to_string()))
}

fn to_jiff(t: Timestamp) -> Result<jiff::Timestamp, ZoneError> {
    jiff::Timestamp::from_second(t.unix()).map_err(|_| ZoneError::OutOfRange(t.to_string()))
}

impl ClinicZone {
    /// The zone with this IANA name (e.g. `Europe/Berlin`), from the bundled
    /// time-zone database.
    pub fn parse(name: &str) -> Result<ClinicZone, ZoneError> {
        let name = name.trim();
        let tz = TimeZone::get(name).map_err(|_| ZoneError::Unknown(name.to_owned()))?;
        Ok(ClinicZone {
            name: tz.iana_name().unwrap_or(name).to_owned(),
            tz,
        })
    }

    /// UTC.
    pub fn utc() -> ClinicZone {
        ClinicZone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first instant of `date` in this zone and the first instant of
    /// the next date: `[start, end)` of the local day (23 or 25 hours long
    /// on a daylight-saving change).
    pub fn day_bounds(&self, date: NaiveDate) -> Result<(Timestamp, Timestamp), ZoneError> {
        let day = civil_date(date)?;
        let next = day
            .tomorrow()
            .map_err(|_| ZoneError::OutOfRange(date.to_string()))?;
        let start = day
            .to_zoned(self.tz.clone())
            .map_err(|_| ZoneError::OutOfRange(date.to_string()))?;
        let end = next
            .to_zoned(self.tz.clone())
            .map_err(|_| ZoneError::OutOfRange(date.to_string()))?;
        Ok((
            to_timestamp(start.timestamp())?,
            to_timestamp(end.timestamp())?,
        ))
    }

    /// The local date of an instant.
    pub fn date_of(&self, t: Timestamp) -> Result<NaiveDate, ZoneError> {
        let (date, _) = self.local(t)?;
        Ok(date)
    }

    /// The local date and time of day (to the second) of an instant.
    pub fn local(&self, t: Timestamp) -> Result<(NaiveDate, NaiveTime), ZoneError> {
        let zoned = to_jiff(t)?.to_zoned(self.tz.clone());
        let dt = zoned.datetime();
        let out_of_range = || ZoneError::OutOfRange(t.to_string());
        let date = NaiveDate::from_ymd_opt(
            i32::from(dt.year()),
            u32::try_from(dt.month()).map_err(|_| out_of_range())?,
            u32::try_from(dt.day()).map_err(|_| out_of_range())?,
        )
        .ok_or_else(out_of_range)?;
        let time = NaiveTime::from_hms_opt(
            u32::try_from(dt.hour()).map_err(|_| out_of_range())?,
            u32::try_from(dt.minute()).map_err(|_| out_of_range())?,
            u32::try_from(dt.second()).map_err(|_| out_of_range())?,
        )
        .ok_or_else(out_of_range)?;
        Ok((date, time))
    }

    /// The instant a person means by `time` on `date` in this zone: a
    /// skipped time moves forward by the length of the jump (02:30 on a
    /// spring-forward night is 03:30), a repeated time is its first
    /// occurrence; the kind says which happened so a screen can tell.
    pub fn instant(&self, date: NaiveDate, time: NaiveTime) -> Result<LocalInstant, ZoneError> {
        let day = civil_date(date)?;
        let out_of_range = || ZoneError::OutOfRange(format!("{date} {time}"));
        let dt = day.to_datetime(
            jiff::civil::Time::new(
                i8::try_from(time.hour()).map_err(|_| out_of_range())?,
                i8::try_from(time.minute()).map_err(|_| out_of_range())?,
                i8::try_from(time.second()).map_err(|_| out_of_range())?,
                0,
            )
            .map_err(|_| out_of_range())?,
        );
        let ambiguous = self.tz.to_ambiguous_timestamp(dt);
        let kind = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => LocalTimeKind::Exact,
            AmbiguousOffset::Gap { .. } => LocalTimeKind::Skipped,
            AmbiguousOffset::Fold { .. } => LocalTimeKind::Repeated,
        };
        // "Compatible" is RFC 5545's rule: later for a gap, earlier for a fold.
        let instant = ambiguous.compatible().map_err(|_| out_of_range())?;
        Ok(LocalInstant {
            instant: to_timestamp(instant)?,
            kind,
        })
    }

    /// The offset from UTC at `t`, in seconds (east positive).
    pub fn offset_seconds(&self, t: Timestamp) -> Result<i32, ZoneError> {
        Ok(self.tz.to_offset(to_jiff(t)?).seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn t(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }
    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    fn hours(bounds: (Timestamp, Timestamp)) -> i64 {
        (bounds.1.unix() - bounds.0.unix()) / 3600
    }

    #[test]
    fn unknown_zones_are_refused_with_a_hint() {
        let e = ClinicZone::parse("Mars/Olympus").unwrap_err();
        assert!(e.to_string().contains("Europe/Berlin"), "{e}");
        assert_eq!(
            ClinicZone::parse(" Europe/Berlin ").unwrap().name(),
            "Europe/Berlin"
        );
    }

    #[test]
    fn berlin_days_across_both_changes() {
        let z = ClinicZone::parse("Europe/Berlin").unwrap();
        // Spring forward: 29 March 2026 has 23 hours, starting 23:00Z the day before.
        let spring = z.day_bounds(d("2026-03-29")).unwrap();
        assert_eq!(spring.0, ts("2026-03-28T23:00:00Z"));
        assert_eq!(hours(spring), 23);
        // Autumn: 25 October 2026 has 25 hours.
        let autumn = z.day_bounds(d("2026-10-25")).unwrap();
        assert_eq!(autumn.0, ts("2026-10-24T22:00:00Z"));
        assert_eq!(hours(autumn), 25);
        assert_eq!(hours(z.day_bounds(d("2026-07-01")).unwrap()), 24);
    }

    #[test]
    fn new_york_days_across_both_changes() {
        let z = ClinicZone::parse("America/New_York").unwrap();
        let spring = z.day_bounds(d("2026-03-08")).unwrap();
        assert_eq!(spring.0, ts("2026-03-08T05:00:00Z"));
        assert_eq!(hours(spring), 23);
        let autumn = z.day_bounds(d("2026-11-01")).unwrap();
        assert_eq!(autumn.0, ts("2026-11-01T04:00:00Z"));
        assert_eq!(hours(autumn), 25);
    }

    #[test]
    fn skipped_and_repeated_times() {
        let z = ClinicZone::parse("Europe/Berlin").unwrap();
        let exact = z.instant(d("2026-03-29"), t("15:30")).unwrap();
        assert_eq!(
            exact,
            LocalInstant {
                instant: ts("2026-03-29T13:30:00Z"),
                kind: LocalTimeKind::Exact
            }
        );
        let skipped = z.instant(d("2026-03-29"), t("02:30")).unwrap();
        assert_eq!(skipped.kind, LocalTimeKind::Skipped);
        assert_eq!(skipped.instant, ts("2026-03-29T01:30:00Z")); // 03:30 CEST
        let repeated = z.instant(d("2026-10-25"), t("02:30")).unwrap();
        assert_eq!(repeated.kind, LocalTimeKind::Repeated);
        assert_eq!(repeated.instant, ts("2026-10-25T00:30:00Z")); // the first, 02:30 CEST
        let ny = ClinicZone::parse("America/New_York").unwrap();
        let fold = ny.instant(d("2026-11-01"), t("01:30")).unwrap();
        assert_eq!(
            (fold.kind, fold.instant),
            (LocalTimeKind::Repeated, ts("2026-11-01T05:30:00Z"))
        );
        let gap = ny.instant(d("2026-03-08"), t("02:15")).unwrap();
        assert_eq!(
            (gap.kind, gap.instant),
            (LocalTimeKind::Skipped, ts("2026-03-08T07:15:00Z"))
        );
    }

    #[test]
    fn local_dates_and_times_of_instants() {
        let z = ClinicZone::parse("America/New_York").unwrap();
        // 02:00Z on 2 December is still 1 December in New York.
        assert_eq!(
            z.date_of(ts("2026-12-02T02:00:00Z")).unwrap(),
            d("2026-12-01")
        );
        let (date, time) = z.local(ts("2026-07-04T16:05:09Z")).unwrap();
        assert_eq!(
            (date, time.to_string()),
            (d("2026-07-04"), "12:05:09".into())
        );
        assert_eq!(
            z.offset_seconds(ts("2026-07-04T16:05:09Z")).unwrap(),
            -4 * 3600
        );
        assert_eq!(
            ClinicZone::utc()
                .date_of(ts("2026-12-02T02:00:00Z"))
                .unwrap(),
            d("2026-12-02")
        );
    }
}
