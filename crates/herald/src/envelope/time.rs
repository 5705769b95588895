//! RFC 3339 times. Envelopes carry the form herald writes, `2026-11-30T11:27:24.955Z`; that form
//! (UTC, `T`, `Z`, up to nine fraction digits, no leap second) is read here field by field, and
//! everything else RFC 3339 allows goes to chrono's parser, which also words the errors.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, ParseError, Utc};

/// The time `text` names, in UTC; exactly what chrono's `DateTime::parse_from_rfc3339` reads.
pub(super) fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, ParseError> {
    match utc(text.as_bytes()) {
        Some(time) => Ok(time),
        None => DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, or `None` for any other form or an impossible date.
fn utc(text: &[u8]) -> Option<DateTime<Utc>> {
    let (&b'Z', text) = text.split_last()? else {
        return None;
    };
    let (head, fraction) = text.split_at_checked(19)?;
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        head[range].iter().try_fold(0, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    if [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
        .iter()
        .any(|&(at, separator)| head[at] != separator)
    {
        return None;
    }
    let nanos = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let value = digits.iter().try_fold(0, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })?;
            value * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let second = number(17..19)?;
    // A leap second (60) is chrono's to read.
    if second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    let time = NaiveTime::from_hms_nano_opt(number(11..13)?, number(14..16)?, second, nanos)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn the_usual_form_reads_as_chrono_reads_it() {
        for text in [
            "2026-11-30T11:27:24.955Z",
            "2026-11-30T11:27:24Z",
            "2026-11-30T11:27:24.1Z",
            "2026-11-30T11:27:24.123456789Z",
            "2024-02-29T23:59:59.999Z",
            "0001-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            assert_eq!(utc(text.as_bytes()), chrono(text), "{text}");
            assert!(utc(text.as_bytes()).is_some(), "{text}");
        }
    }

    #[test]
    fn anything_else_goes_to_chrono() {
        for text in [
            "2026-11-30t11:27:24Z",
            "2026-11-30T11:27:24z",
            "2026-11-30 11:27:24Z",
            "2026-11-30T11:27:24+01:00",
            "2026-11-30T11:27:60Z",
            "2026-11-30T11:27:24.1234567891Z",
            "2026-11-30T11:27:24.Z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "+026-11-30T11:27:24Z",
            "2026-11-3OT11:27:24Z",
            "Z",
            "",
        ] {
            assert_eq!(utc(text.as_bytes()), None, "{text}");
            assert_eq!(
                parse_rfc3339(text).ok(),
                chrono(text),
                "{text}: the same answer as chrono"
            );
        }
    }

    /// Random edits of a valid time: wherever the short path answers, chrono agrees.
    #[test]
    fn the_short_path_never_disagrees_with_chrono() {
        let base = b"2026-11-30T11:27:24.955Z";
        let alphabet = b"0123456789-:.TZtz+ 9";
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as usize
        };
        for _ in 0..50_000 {
            let mut text = base.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = next() % text.len();
                match next() % 3 {
                    0 => text[at] = alphabet[next() % alphabet.len()],
                    1 => {
                        text.remove(at);
                    }
                    _ => text.insert(at, alphabet[next() % alphabet.len()]),
                }
            }
            let text = String::from_utf8(text).unwrap();
            if let Some(time) = utc(text.as_bytes()) {
                assert_eq!(Some(time), chrono(&text), "{text}");
            }
        }
    }
}
