//! ISO 8601 durations as Event Grid writes them (`P7D`, `PT1H30M`, `P1DT12H`).

use std::time::Duration;

/// Parse an ISO 8601 duration with days, hours, minutes and seconds (no years, months or weeks:
/// Event Grid's time-to-live values never use them, and their length is not fixed).
pub fn parse_iso8601_duration(text: &str) -> Result<Duration, String> {
    let rest = text.strip_prefix('P').ok_or_else(|| {
        format!("'{text}' is not an ISO 8601 duration: it must start with 'P' (e.g. P1D, PT30M)")
    })?;
    let (date_part, time_part) = match rest.split_once('T') {
        Some((date, time)) => {
            if time.is_empty() {
                return Err(format!(
                    "'{text}' has a 'T' with no hours, minutes or seconds after it"
                ));
            }
            (date, Some(time))
        }
        None => (rest, None),
    };
    if date_part.is_empty() && time_part.is_none() {
        return Err(format!("'{text}' is an empty duration"));
    }
    let mut total = 0f64;
    total += parse_components(text, date_part, &[('D', 86_400.0)])?;
    if let Some(time) = time_part {
        total += parse_components(text, time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    Ok(Duration::from_secs_f64(total))
}

fn parse_components(whole: &str, mut part: &str, units: &[(char, f64)]) -> Result<f64, String> {
    let mut seconds = 0f64;
    let mut allowed = units;
    while !part.is_empty() {
        let digits_end = part
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{whole}': the number '{part}' has no unit"))?;
        let (number, after) = part.split_at(digits_end);
        let unit = after.chars().next().unwrap_or_default();
        let position = allowed.iter().position(|(u, _)| *u == unit).ok_or_else(|| {
            let expected: String = units.iter().map(|(u, _)| *u).collect();
            format!(
                "'{whole}': unexpected unit '{unit}' (allowed here, in order: {expected}; years, months and weeks are not supported)"
            )
        })?;
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{whole}': '{number}' is not a number"))?;
        if unit != 'S' && number.contains('.') {
            return Err(format!("'{whole}': only seconds may have a fraction"));
        }
        seconds += value * allowed[position].1;
        allowed = &allowed[position + 1..];
        part = &after[unit.len_utf8()..];
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_hours_minutes_and_seconds_add_up() {
        assert_eq!(
            parse_iso8601_duration("P1DT2H3M4S"),
            Ok(Duration::from_secs(86_400 + 7_200 + 180 + 4))
        );
        assert_eq!(
            parse_iso8601_duration("P7D"),
            Ok(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(parse_iso8601_duration("PT1M"), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse_iso8601_duration("PT0.5S"),
            Ok(Duration::from_millis(500))
        );
    }

    #[test]
    fn malformed_durations_are_refused_with_a_reason() {
        assert!(
            parse_iso8601_duration("1D")
                .unwrap_err()
                .contains("must start with 'P'")
        );
        assert!(
            parse_iso8601_duration("P")
                .unwrap_err()
                .contains("empty duration")
        );
        assert!(
            parse_iso8601_duration("PT")
                .unwrap_err()
                .contains("no hours")
        );
        assert!(
            parse_iso8601_duration("P1Y")
                .unwrap_err()
                .contains("unexpected unit 'Y'")
        );
        assert!(
            parse_iso8601_duration("PT1M1H")
                .unwrap_err()
                .contains("unexpected unit 'H'")
        );
        assert!(
            parse_iso8601_duration("PT5")
                .unwrap_err()
                .contains("has no unit")
        );
        assert!(
            parse_iso8601_duration("P1.5D")
                .unwrap_err()
                .contains("only seconds")
        );
        assert!(
            parse_iso8601_duration("P1D2D")
                .unwrap_err()
                .contains("unexpected unit 'D'")
        );
    }
}
