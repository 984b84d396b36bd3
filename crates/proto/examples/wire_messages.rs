//! The generated messages on the wire: encode a Workload API response and an Exchange request
//! with prost, decode them back, and show that `Debug` never prints the secrets they carry.
//!
//! ```text
//! cargo run -p svid-broker-proto --example wire_messages
//! ```

use prost::Message;
use svid_broker_proto::{exchange, workload};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // What a Workload API server sends for FetchJWTSVID. The `svid` string is a bearer token.
    let response = workload::JwtsvidResponse {
        svids: vec![workload::Jwtsvid {
            spiffe_id: "spiffe://example.org/ns/prod/sa/web".to_owned(),
            svid: "eyJhbGciOiJFUzI1NiJ9.e30.not-a-real-signature".to_owned(),
            hint: String::new(),
        }],
    };
    let bytes = response.encode_to_vec();
    let decoded = workload::JwtsvidResponse::decode(bytes.as_slice())?;
    if decoded != response {
        return Err("the message changed on a round trip".into());
    }
    let shown = format!("{decoded:?}");
    if shown.contains("eyJ") {
        return Err("Debug printed the token".into());
    }
    println!(
        "JwtsvidResponse, {} bytes on the wire: {shown}",
        bytes.len()
    );

    // An RFC 8693 token exchange request as svid-broker's Exchange API takes it.
    let request = exchange::ExchangeRequest {
        audience: "registry.example.org".to_owned(),
        scope: vec!["repository:team/app:pull".to_owned()],
        ..Default::default()
    };
    let decoded = exchange::ExchangeRequest::decode(request.encode_to_vec().as_slice())?;
    println!(
        "ExchangeRequest for {} asking {:?}",
        decoded.audience, decoded.scope
    );
    Ok(())
}
