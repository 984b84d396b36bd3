//! The shapes of Google's names the broker is configured with (a workload identity pool
//! provider, a service account's email), the grant's mapping, and the RFC 3339 times IAM
//! Credentials answers with. Pure functions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What every provider's full resource name starts with.
pub(crate) const PROVIDER_PREFIX: &str = "//iam.googleapis.com/projects/";
/// The domain every service account email ends with (user-managed ones end
/// `.iam.gserviceaccount.com`, Google's default ones `developer.gserviceaccount.com` or
/// `appspot.gserviceaccount.com`).
pub(crate) const SERVICE_ACCOUNT_DOMAIN: &str = "gserviceaccount.com";
/// Longest service account email accepted (an email's limit).
pub(crate) const MAX_EMAIL_LEN: usize = 254;

/// A workload identity pool provider's parts, from its full resource name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderName {
    pub(crate) project_number: String,
    pub(crate) pool: String,
    pub(crate) provider: String,
}

/// The provider rule, as Google states it: `//iam.googleapis.com/projects/<project number>/
/// locations/global/workloadIdentityPools/<pool>/providers/<provider>`, the project as its
/// number (not its id), the only location `global`, pool and provider ids 4 to 32 characters
/// of `[a-z0-9-]` not starting `gcp-` (reserved for Google).
pub(crate) const PROVIDER_RULE: &str = "//iam.googleapis.com/projects/<project number>/locations/\
     global/workloadIdentityPools/<pool id>/providers/<provider id>, ids 4 to 32 characters of \
     [a-z0-9-] not starting gcp-";

/// Parses a provider's full resource name; `None` when it breaks [`PROVIDER_RULE`].
pub(crate) fn parse_provider(name: &str) -> Option<ProviderName> {
    let rest = name.strip_prefix(PROVIDER_PREFIX)?;
    let mut parts = rest.split('/');
    let project_number = parts.next()?;
    let shape = [
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    ];
    if parts.next().is_some() {
        return None;
    }
    let [locations, global, pools, pool, providers, provider] = shape;
    let number_ok = !project_number.is_empty()
        && project_number.len() <= 20
        && project_number.bytes().all(|b| b.is_ascii_digit());
    if !number_ok
        || locations != "locations"
        || global != "global"
        || pools != "workloadIdentityPools"
        || providers != "providers"
        || !valid_id(pool)
        || !valid_id(provider)
    {
        return None;
    }
    Some(ProviderName {
        project_number: project_number.to_owned(),
        pool: pool.to_owned(),
        provider: provider.to_owned(),
    })
}

/// A pool or provider id: 4 to 32 characters of `[a-z0-9-]`, not starting `gcp-`.
fn valid_id(id: &str) -> bool {
    (4..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with("gcp-")
}

/// What a `service_account` must look like, as
/// [`ConfigProblem::InvalidSetting`](crate::ConfigProblem::InvalidSetting) words it.
pub(crate) const SERVICE_ACCOUNT_RULE: &str = "an email <name>@<project>.iam.gserviceaccount.com \
     (or Google's default <...>@developer.gserviceaccount.com / @appspot.gserviceaccount.com): \
     lowercase letters, digits and '-' before the @, at most 254 characters";

/// Whether `email` is a service account's email: a name of `[a-z0-9-]` (1 to 64, starting
/// with a letter or digit), `@`, a domain of `[a-z0-9.:-]` labels ending in
/// [`SERVICE_ACCOUNT_DOMAIN`] (`:` for domain-scoped project ids).
pub(crate) fn valid_service_account(email: &str) -> bool {
    let Some((name, domain)) = email.split_once('@') else {
        return false;
    };
    let name_ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().next().is_some_and(|b| b != b'-');
    let domain_ok = domain
        .strip_suffix(SERVICE_ACCOUNT_DOMAIN)
        .and_then(|head| head.strip_suffix('.'))
        .is_some_and(|head| {
            !head.is_empty()
                && head.split('.').all(|label| {
                    !label.is_empty()
                        && label.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b':'
                        })
                })
        });
    email.len() <= MAX_EMAIL_LEN && name_ok && domain_ok
}

pub(crate) use crate::grant::{Access, pull_or_push as map_grant};

/// Longest RFC 3339 text read (`2026-12-03T18:00:00.123456789+00:00` is 35 characters).
const MAX_RFC3339_LEN: usize = 40;
/// Latest year accepted: far beyond any token, and keeps the arithmetic small.
const MAX_YEAR: u64 = 9999;

/// Parses an RFC 3339 date-time (`2026-12-03T18:00:00Z`, `...T18:00:00.5Z`,
/// `...T19:00:00+01:00`), as protobuf's JSON `Timestamp` may be written; `None` for anything
/// else, for a time before 1970, or past year 9999. Fractions are cut to nanoseconds; a leap
/// second (`:60`) is refused.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    if text.len() > MAX_RFC3339_LEN || !text.is_ascii() {
        return None;
    }
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<u64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1970..=MAX_YEAR).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut nanos: u64 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let count = at - start;
        if count == 0 || count > 9 {
            return None;
        }
        nanos = digits(start, count)? * 10u64.pow(u32::try_from(9 - count).ok()?);
    }
    let offset_secs: i64 = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |x: u8, y: u8| -> Option<i64> {
                (x.is_ascii_digit() && y.is_ascii_digit())
                    .then(|| i64::from(x - b'0') * 10 + i64::from(y - b'0'))
            };
            let (hours, minutes) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = hours * 3600 + minutes * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = i64::try_from(local).ok()?.checked_sub(offset_secs)?;
    let utc = u64::try_from(utc).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(utc, u32::try_from(nanos).ok()?))
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of 1970 or later (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
