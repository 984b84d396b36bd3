//! Harbor's side of the broker's names (see [`crate::naming`]): `<prefix>-<revoke_unix>-<16 hex>`
//! is the robot's local name, and the project robot's full name is `robot$<project>+<that>`.

use std::time::SystemTime;

use svid_broker_identity::clock::Rfc3339;

use crate::naming::{blank_controls, cap_chars};

/// Longest robot description, in characters: a human hint, not state, so a long SPIFFE ID is
/// cut rather than letting the description grow with it.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 255;

/// The revocation time encoded in a robot's name, when the robot is one this prefix names.
///
/// `name` may be the full name (`robot$team-a+svid-...`: the part after the last `+` is read,
/// and Harbor's robot names cannot contain `+`) or the local one.
pub(crate) fn encoded_revoke_time(prefix: &str, name: &str) -> Option<u64> {
    let local = name.rsplit_once('+').map_or(name, |(_, local)| local);
    crate::naming::encoded_revoke_time(prefix, local)
}

/// The robot's description: `svid-broker: <SPIFFE ID> until <RFC 3339>`, the ID cut (with
/// `...`) so the whole stays within [`MAX_DESCRIPTION_CHARS`].
pub(crate) fn robot_description(subject: &str, revoke_at: SystemTime) -> String {
    const HEAD: &str = "svid-broker: ";
    let tail = format!(" until {}", Rfc3339(revoke_at));
    let room = MAX_DESCRIPTION_CHARS - HEAD.len() - tail.len();
    format!("{HEAD}{}{tail}", cap_chars(&blank_controls(subject), room))
}
