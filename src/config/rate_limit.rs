//! `RATE_LIMIT` in Flask-Limiter's notation (the `limits` library's grammar):
//! `200 per day`, `10/minute`, `10 per 2 hours`, several joined by `;`, `,` or `|`.
//! `off` (or `none`) turns the per-IP limit off.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.per.as_secs();
        let units =
            [("year", 12 * 30 * 86_400), ("month", 30 * 86_400), ("day", 86_400), ("hour", 3600), ("minute", 60)];
        let (unit, size) = units.iter().copied().find(|(_, size)| secs.is_multiple_of(*size)).unwrap_or(("second", 1));
        match secs / size {
            1 => write!(f, "{} per {unit}", self.count),
            n => write!(f, "{} per {n} {unit}s", self.count),
        }
    }
}

/// Parses a whole `RATE_LIMIT` value. An error message quotes the part it could not read.
pub fn parse_rate_limits(raw: &str) -> Result<Vec<RateLimit>, String> {
    if matches!(raw.trim().to_ascii_lowercase().as_str(), "off" | "none") {
        return Ok(Vec::new());
    }
    raw.split([';', ',', '|'])
        .filter(|part| !part.trim().is_empty())
        .map(parse_one)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|limits| {
            if limits.is_empty() { Err("is empty; write e.g. '200 per day', or 'off'".into()) } else { Ok(limits) }
        })
}

fn parse_one(part: &str) -> Result<RateLimit, String> {
    let bad = || format!("cannot read '{}': write e.g. '200 per day', '10/minute' or '5 per 2 hours'", part.trim());
    let lower = part.trim().to_ascii_lowercase();
    let (count, rest) = match lower.split_once('/') {
        Some((count, rest)) => (count.trim(), rest.trim()),
        None => {
            let (count, rest) = lower.split_once(" per ").ok_or_else(bad)?;
            (count.trim(), rest.trim())
        }
    };
    let count: u32 = count.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let (multiplier, unit) = match rest.split_once(char::is_whitespace) {
        Some((n, unit)) => (n.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(bad)?, unit.trim()),
        None => (1, rest),
    };
    let seconds: u64 = match unit.strip_suffix('s').unwrap_or(unit) {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "month" => 30 * 86_400,
        "year" => 12 * 30 * 86_400,
        _ => return Err(bad()),
    };
    Ok(RateLimit { count, per: Duration::from_secs(seconds.saturating_mul(multiplier)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(count: u32, secs: u64) -> RateLimit {
        RateLimit { count, per: Duration::from_secs(secs) }
    }

    #[test]
    fn flask_limiter_notations() {
        assert_eq!(parse_rate_limits("200 per day").unwrap(), vec![limit(200, 86_400)]);
        assert_eq!(parse_rate_limits("10/minute").unwrap(), vec![limit(10, 60)]);
        assert_eq!(parse_rate_limits("5 per second; 100 per hour").unwrap(), vec![limit(5, 1), limit(100, 3600)]);
        assert_eq!(parse_rate_limits("10 per 2 hours").unwrap(), vec![limit(10, 7200)]);
        assert_eq!(parse_rate_limits("1/Days, 3/seconds").unwrap(), vec![limit(1, 86_400), limit(3, 1)]);
        assert_eq!(parse_rate_limits("off").unwrap(), vec![]);
    }

    #[test]
    fn nonsense_is_refused_with_the_offending_part() {
        for bad in ["lots", "", "0 per day", "ten per day", "5 per fortnight", "5 per 0 days", "5 per"] {
            let err = parse_rate_limits(bad).unwrap_err();
            assert!(err.contains(bad.trim()), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["200 per day", "10 per minute", "10 per 2 hours", "5 per second"] {
            let parsed = parse_rate_limits(text).unwrap();
            assert_eq!(parsed[0].to_string(), text);
        }
    }
}
