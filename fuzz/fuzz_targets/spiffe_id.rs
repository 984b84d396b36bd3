//! Fuzzes SPIFFE ID and trust domain parsing in both case modes.
//!
//! Invariants checked on every input:
//! - parsing never panics, for any bytes (as lossy UTF-8) in either mode;
//! - a strict parse keeps the input byte for byte, and its string re-parses to an equal ID;
//! - whatever `LowercaseAscii` accepts is canonical: the strict parser accepts its output
//!   unchanged, and the result never differs from the input except by ASCII case in the
//!   scheme and trust domain;
//! - the accessors agree with the string (`trust_domain`, `path`, `segments`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use svid_broker_identity::id::{ParseMode, SpiffeId, TrustDomain};

fn check_accessors(id: &SpiffeId) {
    let td = id.trust_domain();
    assert_eq!(
        id.as_str(),
        format!("{}{}", td.id_str(), id.path()),
        "id = td id + path"
    );
    let rebuilt = SpiffeId::from_segments(td, &id.segments().collect::<Vec<_>>())
        .expect("segments of a valid id rebuild it");
    assert_eq!(&rebuilt, id);
    assert_eq!(TrustDomain::parse(td.as_str()).as_ref(), Ok(td));
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let input = input.as_ref();

    if let Ok(id) = SpiffeId::parse(input) {
        assert_eq!(id.as_str(), input, "strict parse must not rewrite");
        assert_eq!(SpiffeId::parse(id.as_str()).as_ref(), Ok(&id));
        check_accessors(&id);
    }

    match SpiffeId::parse_with(input, ParseMode::LowercaseAscii) {
        Ok(id) => {
            assert_eq!(
                SpiffeId::parse(id.as_str()).as_ref(),
                Ok(&id),
                "lenient output is canonical"
            );
            assert_eq!(id.as_str().len(), input.len());
            assert!(id.as_str().eq_ignore_ascii_case(input));
            assert_eq!(
                id.path(),
                &input[input.len() - id.path().len()..],
                "path keeps its case"
            );
            check_accessors(&id);
        }
        Err(_) => {
            assert!(
                SpiffeId::parse(input).is_err(),
                "strict accepts only what lenient accepts"
            );
        }
    }

    let _ = TrustDomain::parse_with(input, ParseMode::LowercaseAscii);
    if let Ok(td) = TrustDomain::parse_id_or_name(input) {
        assert_eq!(TrustDomain::parse(td.as_str()).as_ref(), Ok(&td));
    }
});
