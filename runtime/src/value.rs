//! Scalar value syntax shared by the compiler (constants) and the binder
//! (JSON input): IP addresses, CIDR blocks, RFC 3339 times and durations.
//!
//! Times and durations are `i64` microseconds; times count from the Unix
//! epoch in UTC. IP addresses are `u128` in IPv6 form, with IPv4 addresses
//! stored as IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), so an address
//! written either way is the same value.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// A network block: the address with host bits cleared, and the prefix
/// length in IPv6 terms (an IPv4 `/8` is `/104`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub network: u128,
    pub prefix: u8,
}

impl Cidr {
    pub fn mask(self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        }
    }

    /// Tells whether the network is an IPv4 network (written in either form).
    pub fn is_ipv4(self) -> bool {
        self.prefix >= 96 && is_ipv4(self.network)
    }

    /// Tests membership. Address families are distinct: an IPv4 address is
    /// in no IPv6 network, even `::/0`, and an IPv6 address in no IPv4 one.
    pub fn contains(self, ip: u128) -> bool {
        ip & self.mask() == self.network && is_ipv4(ip) == self.is_ipv4()
    }
}

/// Tells whether an address is IPv4, that is IPv4-mapped in the `u128` form.
pub fn is_ipv4(ip: u128) -> bool {
    ip >> 32 == 0xffff
}

fn to_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Parses an IPv4 or IPv6 address. Leading zeros in IPv4 octets and IPv6
/// zone ids are rejected.
pub fn parse_ip(text: &str) -> Result<u128, String> {
    if text.contains('%') {
        return Err(format!(
            "invalid IP address `{text}`: zone ids are not accepted"
        ));
    }
    IpAddr::from_str(text)
        .map(to_u128)
        .map_err(|_| format!("invalid IP address `{text}`"))
}

/// Parses `address/prefix`; host bits set after the prefix are an error.
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let (address, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("invalid CIDR `{text}`: expected `address/prefix`"))?;
    if text.contains('%') {
        return Err(format!("invalid CIDR `{text}`: zone ids are not accepted"));
    }
    let address =
        IpAddr::from_str(address).map_err(|_| format!("invalid CIDR `{text}`: invalid address"))?;
    let (max, offset) = if address.is_ipv4() {
        (32, 96)
    } else {
        (128, 0)
    };
    // Decimal digits without a leading zero, as in the address itself.
    let valid_digits = !prefix.is_empty()
        && prefix.len() <= 3
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && (prefix == "0" || !prefix.starts_with('0'));
    let length: u8 = prefix
        .parse()
        .ok()
        .filter(|_| valid_digits)
        .ok_or_else(|| format!("invalid CIDR `{text}`: invalid prefix length `{prefix}`"))?;
    if length > max {
        return Err(format!(
            "invalid CIDR `{text}`: prefix length {length} exceeds {max}"
        ));
    }
    let cidr = Cidr {
        network: to_u128(address),
        prefix: length + offset,
    };
    if cidr.network & !cidr.mask() != 0 {
        return Err(format!(
            "invalid CIDR `{text}`: host bits are set after the /{length} prefix"
        ));
    }
    Ok(cidr)
}

pub fn format_ip(ip: u128) -> String {
    let v6 = Ipv6Addr::from(ip);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => v6.to_string(),
    }
}

pub fn format_cidr(cidr: Cidr) -> String {
    let v6 = Ipv6Addr::from(cidr.network);
    match v6.to_ipv4_mapped() {
        Some(v4) if cidr.prefix >= 96 => format!("{v4}/{}", cidr.prefix - 96),
        _ => format!("{v6}/{}", cidr.prefix),
    }
}

/// Parses an RFC 3339 time with any offset into microseconds since the epoch.
/// The instant in UTC must lie in years 0000 to 9999, which RFC 3339 can
/// write: `9999-12-31T23:59:59-01:00` is in year 10000 and is rejected.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        format!("invalid time `{text}`: expected RFC 3339, e.g. `2026-12-04T10:00:00Z`")
    })?;
    let micros = parsed.unix_timestamp_nanos().div_euclid(1_000);
    i64::try_from(micros)
        .ok()
        .filter(|micros| (MIN_TIME..=MAX_TIME).contains(micros))
        .ok_or_else(|| {
            format!("time `{text}` is out of range: in UTC it must fall in years 0000 to 9999")
        })
}

/// Formats microseconds since the epoch as RFC 3339 in UTC with a `Z` suffix.
pub fn format_time(micros: i64) -> String {
    let clamped = micros.clamp(MIN_TIME, MAX_TIME);
    let nanos = i128::from(clamped) * 1_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(time) => time
            .format(&Rfc3339)
            .unwrap_or_else(|_| clamped.to_string()),
        Err(_) => clamped.to_string(),
    }
}

/// The earliest time RFC 3339 can write, 0000-01-01T00:00:00Z, in microseconds.
pub const MIN_TIME: i64 = -62_167_219_200_000_000;
/// The latest time RFC 3339 can write, 9999-12-31T23:59:59.999999Z.
pub const MAX_TIME: i64 = 253_402_300_799_999_999;

const DURATION_UNITS: [(&str, i64); 6] = [
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
    ("us", 1),
];

/// Parses `"300s"`, `"15m"`, `"12h"`, `"7d"`, `"250ms"` or `"10us"` into
/// microseconds; a leading `-` makes the duration negative, so every
/// duration that [`format_duration`] prints parses back.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || {
        format!(
            "invalid duration `{text}`: expected a whole number and a unit (us, ms, s, m, h, d)"
        )
    };
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits = magnitude.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = magnitude.split_at(digits);
    let scale = DURATION_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)
        .ok_or_else(invalid)?;
    if number.is_empty() {
        return Err(invalid());
    }
    // The magnitude is read wider than i64, so that the most negative
    // duration, which `format_duration` prints, parses back.
    let out_of_range = || format!("duration `{text}` is out of range");
    let count: i128 = number.parse().map_err(|_| out_of_range())?;
    let magnitude = count
        .checked_mul(i128::from(scale))
        .ok_or_else(out_of_range)?;
    let micros = if negative { -magnitude } else { magnitude };
    i64::try_from(micros).map_err(|_| out_of_range())
}

/// Formats a duration in the largest unit that divides it: `8h`, `90m`, `0s`.
pub fn format_duration(micros: i64) -> String {
    if micros == 0 {
        return "0s".to_string();
    }
    // The last unit, `us`, divides every duration.
    let (unit, scale) = DURATION_UNITS
        .iter()
        .find(|(_, scale)| micros % scale == 0)
        .unwrap_or(&("us", 1));
    format!("{}{unit}", micros / scale)
}

/// Computes the hour of day (0 to 23) in UTC.
pub fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(3_600_000_000).rem_euclid(24)
}

/// Computes the ISO 8601 weekday (1 is Monday, 7 is Sunday) in UTC.
pub fn weekday_of(micros: i64) -> i64 {
    // 1970-01-01 was a Thursday (ISO weekday 4).
    (micros.div_euclid(86_400_000_000) + 3).rem_euclid(7) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_equals_ipv4() {
        assert_eq!(parse_ip("::ffff:10.0.0.1"), parse_ip("10.0.0.1"));
    }

    #[test]
    fn ip_with_leading_zero_is_rejected() {
        assert!(parse_ip("010.0.0.1").is_err());
        assert!(parse_ip("fe80::1%eth0").is_err());
        assert!(parse_ip("10.0.0.300").is_err());
    }

    #[test]
    fn cidr_checks_prefix_and_host_bits() {
        assert!(parse_cidr("192.168.1.0/33")
            .unwrap_err()
            .contains("exceeds 32"));
        assert!(parse_cidr("10.0.0.1/8").unwrap_err().contains("host bits"));
        assert!(parse_cidr("10.0.0.0/08").is_err());
        assert_eq!(parse_duration("-9223372036854775808us"), Ok(i64::MIN));
        assert_eq!(parse_duration(&format_duration(i64::MIN)), Ok(i64::MIN));
        assert!(parse_duration("9223372036854775808us").is_err());
        assert!(parse_cidr("::/00").is_err());
        let block = parse_cidr("10.0.0.0/8").unwrap();
        assert!(block.contains(parse_ip("10.200.1.1").unwrap()));
        assert!(!block.contains(parse_ip("11.0.0.1").unwrap()));
        let v6 = parse_cidr("2001:db8:100::/48").unwrap();
        assert!(v6.contains(parse_ip("2001:db8:100:5::1").unwrap()));
        assert!(!v6.contains(parse_ip("2001:db8:101::1").unwrap()));
        assert_eq!(format_cidr(block), "10.0.0.0/8");
    }

    #[test]
    fn address_families_do_not_mix() {
        let everything_v6 = parse_cidr("::/0").unwrap();
        let everything_v4 = parse_cidr("0.0.0.0/0").unwrap();
        let v4 = parse_ip("10.1.2.3").unwrap();
        let v6 = parse_ip("2001:db8::1").unwrap();
        assert!(!everything_v6.contains(v4));
        assert!(everything_v6.contains(v6));
        assert!(everything_v4.contains(v4));
        assert!(!everything_v4.contains(v6));
        assert!(parse_cidr("::ffff:10.0.0.0/104").unwrap().contains(v4));
    }

    #[test]
    fn times_outside_rfc_3339_print_at_the_bounds() {
        assert_eq!(format_time(i64::MAX), "9999-12-31T23:59:59.999999Z");
        assert!(parse_time("9999-12-31T23:59:59-23:00").is_err());
        assert!(parse_time("0000-01-01T00:00:00+00:01").is_err());
        assert_eq!(parse_time("9999-12-31T23:59:59.999999Z"), Ok(MAX_TIME));
        assert_eq!(parse_time("0000-01-01T00:00:00Z"), Ok(MIN_TIME));
        assert_eq!(format_time(i64::MIN), "0000-01-01T00:00:00Z");
    }

    #[test]
    fn times_accept_offsets() {
        assert_eq!(
            parse_time("2026-12-04T11:00:00+01:00"),
            parse_time("2026-12-04T10:00:00Z")
        );
        assert_eq!(
            format_time(parse_time("2026-12-04T11:00:00+01:00").unwrap()),
            "2026-12-04T10:00:00Z"
        );
        assert!(parse_time("2026-12-04 10:00").is_err());
    }

    #[test]
    fn durations_print_in_largest_unit() {
        assert_eq!(format_duration(parse_duration("480m").unwrap()), "8h");
        assert_eq!(format_duration(parse_duration("90m").unwrap()), "90m");
        assert_eq!(format_duration(0), "0s");
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_duration("-5s"), Ok(-5_000_000));
        assert_eq!(parse_duration(&format_duration(1_500)), Ok(1_500));
        assert_eq!(parse_duration(&format_duration(7)), Ok(7));
        assert!(parse_duration("--5s").is_err());
    }

    #[test]
    fn calendar_functions_use_utc() {
        let t = parse_time("2026-12-04T10:30:00+02:00").unwrap();
        assert_eq!(hour_of(t), 8);
        assert_eq!(weekday_of(t), 5);
    }
}
