//! The open-file limit against the listeners' connection caps.
//!
//! Every accepted connection is a file descriptor. With a soft `RLIMIT_NOFILE` below the caps,
//! `accept` fails with `EMFILE` before the governor's caps are reached and new clients park in
//! the kernel backlog, which is the lock-out the caps exist to prevent.
//!
//! # Decisions
//! - **Raise the soft limit to the hard limit at start-up**, before any listener: an
//!   unprivileged process may, and it costs nothing until descriptors are used.
//! - **Warn, do not refuse, when it is still too low.** The hard limit is the operator's (a
//!   container runtime's, a systemd unit's); refusing to start would turn a lowered limit into an
//!   outage. The warning names the rule and the numbers so the operator can raise `LimitNOFILE`
//!   or lower `server.max_connections`.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything that is not a client connection (log and audit files,
/// watched files, upstream and Workload API connections, the runtime's own).
pub const FD_MARGIN: u64 = 256;

/// What the open-file limit allows, against what the listeners need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FdLimitCheck {
    /// The soft limit covers every listener's `max_connections` plus [`FD_MARGIN`].
    Enough,
    /// The soft limit is below what the caps need.
    TooLow {
        /// The soft `RLIMIT_NOFILE` checked (after the raise to the hard limit, if tried).
        limit: u64,
        /// Sum of the listeners' `max_connections` plus [`FD_MARGIN`].
        needed: u64,
    },
}

/// Descriptors needed by listeners with these `max_connections` caps.
pub fn needed(max_connections: &[usize]) -> u64 {
    max_connections
        .iter()
        .map(|&cap| u64::try_from(cap).unwrap_or(u64::MAX))
        .fold(FD_MARGIN, u64::saturating_add)
}

/// Whether a soft limit of `limit` (`None`: unlimited) suffices for `max_connections`.
pub fn check(limit: Option<u64>, max_connections: &[usize]) -> FdLimitCheck {
    let needed = needed(max_connections);
    match limit {
        Some(limit) if limit < needed => FdLimitCheck::TooLow { limit, needed },
        _ => FdLimitCheck::Enough,
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit now (`None`: unlimited).
/// A failed raise leaves the limit as it was and is logged.
pub fn raise_nofile_limit() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current == maximum {
        return current;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: maximum,
            maximum,
        },
    ) {
        Ok(()) => maximum,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file soft limit to the hard limit");
            current
        }
    }
}

/// Raises the limit, then warns when it is still below what `max_connections` (one entry per
/// listener) need.
pub fn raise_and_check(max_connections: &[usize]) -> FdLimitCheck {
    let result = check(raise_nofile_limit(), max_connections);
    if let FdLimitCheck::TooLow { limit, needed } = result {
        tracing::warn!(
            limit,
            needed,
            "open-file limit (RLIMIT_NOFILE) {limit} is below the listeners' max_connections plus \
             {FD_MARGIN}: {needed}; past it accept fails with EMFILE and clients wait in the \
             backlog. Raise the hard limit (LimitNOFILE=) or lower server.max_connections"
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_caps_of_both_listeners_do_not_fit_in_1024_descriptors() {
        let caps = [super::super::DEFAULT_MAX_CONNECTIONS; 2];
        assert_eq!(needed(&caps), 2 * 1024 + FD_MARGIN);
        assert_eq!(
            check(Some(1024), &caps),
            FdLimitCheck::TooLow {
                limit: 1024,
                needed: 2304
            }
        );
        assert_eq!(check(Some(2304), &caps), FdLimitCheck::Enough);
        assert_eq!(
            check(Some(2303), &caps),
            FdLimitCheck::TooLow {
                limit: 2303,
                needed: 2304
            }
        );
    }

    #[test]
    fn unlimited_always_fits_and_huge_caps_do_not_overflow() {
        assert_eq!(check(None, &[usize::MAX, usize::MAX]), FdLimitCheck::Enough);
        assert_eq!(needed(&[usize::MAX, 1]), u64::MAX);
        assert_eq!(check(Some(524_288), &[1024]), FdLimitCheck::Enough);
        // One listener (no gRPC address): only its cap counts.
        assert_eq!(check(Some(1400), &[1024]), FdLimitCheck::Enough);
    }
}
