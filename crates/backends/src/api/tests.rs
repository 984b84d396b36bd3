use http::{HeaderMap, StatusCode};
use svid_broker_identity::secret::SecretString;

use super::*;

fn client() -> ApiClient {
    let settings = ClientSettings::new(
        "http://127.0.0.1:1",
        "admin",
        SecretString::from("hunter2-secret".to_owned()),
    );
    ApiClient::new(&settings).unwrap()
}

fn answer(status: u16, body: &str) -> ApiResponse {
    ApiResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: body.as_bytes().to_vec(),
    }
}

fn body_text(client: &ApiClient, body: &[u8]) -> String {
    client.scrub(&String::from_utf8_lossy(body))
}

#[test]
fn a_404_is_no_such_project_only_when_the_backend_says_which_text_means_that() {
    let client = client();
    let missing = answer(404, "404 Project Not Found");
    assert_eq!(
        expect_success(&client, &missing, body_text, Some("Project Not Found")),
        Err(Failure::NoSuchProject)
    );
    assert!(matches!(
        expect_success(&client, &missing, body_text, None),
        Err(Failure::Rejected { status: 404, .. })
    ));
    assert!(matches!(
        expect_success(
            &client,
            &answer(404, "no route"),
            body_text,
            Some("Project Not Found")
        ),
        Err(Failure::Rejected { status: 404, .. })
    ));
}

#[test]
fn the_vendor_text_is_read_by_the_backends_reader_and_scrubbed() {
    let client = client();
    assert_eq!(
        expect_success(&client, &answer(403, "no, hunter2-secret"), body_text, None),
        Err(Failure::Forbidden {
            message: client.scrub("no, hunter2-secret")
        })
    );
    assert!(
        !client
            .scrub("no, hunter2-secret")
            .contains("hunter2-secret")
    );
    assert_eq!(
        expect_success(&client, &answer(204, ""), body_text, None),
        Ok(())
    );
}

#[test]
fn json_that_is_not_the_shape_is_malformed_with_its_description() {
    let parsed: Result<Vec<u32>, Failure> = parse_json(b"[1, 2]", "a list");
    assert_eq!(parsed, Ok(vec![1, 2]));
    let parsed: Result<Vec<u32>, Failure> = parse_json(b"{", "a list");
    assert_eq!(parsed, Err(Failure::Malformed { what: "a list" }));
}
