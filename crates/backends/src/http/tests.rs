use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

#[test]
fn base_urls_parse_into_a_target() {
    let target = Target::parse("https://harbor.example.com:8443/base/").unwrap();
    assert_eq!(
        target,
        Target {
            tls: true,
            host: "harbor.example.com".to_owned(),
            port: 8443,
            authority: "harbor.example.com:8443".to_owned(),
            path_prefix: "/base".to_owned(),
        }
    );
    let root = Target::parse("https://harbor.example.com").unwrap();
    assert_eq!((root.port, root.path_prefix.as_str()), (443, ""));
    let v6 = Target::parse("http://[::1]:8080").unwrap();
    assert_eq!(
        (v6.host.as_str(), v6.authority.as_str()),
        ("::1", "[::1]:8080")
    );
    let local = Target::parse("http://127.0.0.2").unwrap();
    assert_eq!((local.tls, local.port), (false, 80));
}

#[test]
fn plain_http_is_refused_unless_the_host_is_a_loopback_address() {
    for url in [
        "http://harbor.example.com",
        "http://localhost:8080",
        "http://10.0.0.1",
        "http://[::2]:80",
        "http://0.0.0.0",
    ] {
        assert!(
            matches!(
                Target::parse(url),
                Err(ConfigProblem::PlainHttpNotLoopback { .. })
            ),
            "{url}"
        );
    }
}

#[test]
fn odd_urls_are_refused() {
    for url in [
        "",
        "harbor.example.com",
        "/api",
        "ftp://h",
        "https://h/?q=1",
        "https://",
    ] {
        assert_eq!(Target::parse(url), Err(ConfigProblem::InvalidUrl), "{url}");
    }
    assert_eq!(
        Target::parse("https://admin:pw@h"),
        Err(ConfigProblem::CredentialsInUrl)
    );
}

#[test]
fn query_components_are_percent_encoded() {
    assert_eq!(
        encode_query_component("Level=project,ProjectID=3"),
        "Level%3Dproject%2CProjectID%3D3"
    );
    assert_eq!(encode_query_component("team-a.b_c~"), "team-a.b_c~");
    assert_eq!(encode_query_component("a b&c/é"), "a%20b%26c%2F%C3%A9");
}

#[test]
fn a_ca_file_must_hold_a_certificate() {
    let dir = std::env::temp_dir().join(format!("backends-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not pem at all").unwrap();
    let mut settings = settings("https://harbor.example.com");
    settings.ca_file = Some(empty);
    assert!(matches!(
        ApiClient::new(&settings),
        Err(ConfigProblem::CaFile {
            reason: "no certificate",
            ..
        })
    ));
    settings.ca_file = Some(dir.join("missing.pem"));
    assert!(matches!(
        ApiClient::new(&settings),
        Err(ConfigProblem::CaFile {
            reason: "unreadable",
            ..
        })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

fn settings(url: &str) -> ClientSettings {
    ClientSettings::new(url, "admin", SecretString::from("hunter2-pw".to_owned()))
}

#[test]
fn debug_output_has_no_credential() {
    let client = ApiClient::new(&settings("http://127.0.0.1:1")).unwrap();
    let shown = format!("{client:?} {:?}", settings("http://127.0.0.1:1"));
    assert!(!shown.contains("hunter2"), "{shown}");
    // Not even base64 of "admin:hunter2-pw".
    assert!(!shown.contains("YWRtaW46aHVudGVyMi1wdw"), "{shown}");
}

/// A one-trick HTTP server: answers every connection with `reply` (or hangs up, or stalls),
/// and records the request heads it saw.
struct TestServer {
    url: String,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

#[derive(Clone)]
enum Behaviour {
    Reply(Vec<u8>),
    Hangup,
    Stall,
}

async fn serve(behaviour: Behaviour) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (seen, count) = (Arc::clone(&heads), Arc::clone(&connections));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let behaviour = behaviour.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                match behaviour {
                    Behaviour::Reply(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    Behaviour::Hangup => drop(stream),
                    Behaviour::Stall => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    TestServer {
        url,
        heads,
        connections,
    }
}

fn reply(status: &str, extra_headers: &str, body: &[u8]) -> Behaviour {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra_headers}connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Behaviour::Reply(bytes)
}

#[tokio::test]
async fn requests_carry_basic_auth_json_and_the_base_path() {
    let server = serve(reply("201 Created", "x-total-count: 3\r\n", b"{\"id\":1}")).await;
    let client = ApiClient::new(&settings(&format!("{}/base/", server.url))).unwrap();
    let response = client
        .send(Method::POST, "/api/v2.0/robots", Some(b"{}".to_vec()))
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.body, b"{\"id\":1}");
    assert_eq!(response.headers["x-total-count"], "3");
    let heads = server.heads.lock().unwrap().clone();
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with("post /base/api/v2.0/robots http/1.1\r\n"),
        "{head}"
    );
    // base64("admin:hunter2-pw")
    assert!(
        head.contains("authorization: basic ywrtaw46ahvudgvymi1wdw==\r\n"),
        "{head}"
    );
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("accept: application/json\r\n"), "{head}");
}

#[tokio::test]
async fn any_status_is_an_answer_with_its_retry_after() {
    let server = serve(reply(
        "429 Too Many Requests",
        "retry-after: 99999\r\n",
        b"",
    ))
    .await;
    let client = ApiClient::new(&settings(&server.url)).unwrap();
    let response = client.send(Method::GET, "/x", None).await.unwrap();
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.retry_after(), Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn answers_over_the_cap_are_refused() {
    let big = vec![b'a'; 2048];
    let server = serve(reply("200 OK", "", &big)).await;
    let mut small = settings(&server.url);
    small.max_response_bytes = 1024;
    let client = ApiClient::new(&small).unwrap();
    assert_eq!(
        client.send(Method::GET, "/x", None).await.unwrap_err(),
        Failure::TooLarge { max: 1024 }
    );
    // Chunked, so no length is declared up front.
    let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'b'; 512]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let server = serve(Behaviour::Reply(chunked)).await;
    small.base_url = server.url.clone();
    let client = ApiClient::new(&small).unwrap();
    assert_eq!(
        client.send(Method::GET, "/x", None).await.unwrap_err(),
        Failure::TooLarge { max: 1024 }
    );
}

#[tokio::test]
async fn a_hangup_or_a_refused_connection_is_unreachable() {
    let server = serve(Behaviour::Hangup).await;
    let client = ApiClient::new(&settings(&server.url)).unwrap();
    assert!(matches!(
        client.send(Method::GET, "/x", None).await,
        Err(Failure::Unreachable { .. })
    ));
    // A port nobody listens on (bound, then dropped).
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = ApiClient::new(&settings(&format!("http://127.0.0.1:{port}"))).unwrap();
    assert_eq!(
        client.send(Method::GET, "/x", None).await.unwrap_err(),
        Failure::Unreachable { during: "connect" }
    );
}

#[tokio::test]
async fn the_deadline_covers_the_whole_answer() {
    let server = serve(Behaviour::Stall).await;
    let mut quick = settings(&server.url);
    quick.request_deadline = Duration::from_millis(200);
    let client = ApiClient::new(&quick).unwrap();
    assert_eq!(
        client.send(Method::GET, "/x", None).await.unwrap_err(),
        Failure::Timeout {
            after: Duration::from_millis(200)
        }
    );
}

#[tokio::test]
async fn a_request_without_a_free_slot_gives_up_after_the_deadline() {
    let server = serve(reply("200 OK", "", b"[]")).await;
    let mut one_slot = settings(&server.url);
    one_slot.request_deadline = Duration::from_millis(200);
    one_slot.max_in_flight = 1;
    let client = ApiClient::new(&one_slot).unwrap();
    let held = client.inner.slots.acquire().await.unwrap();
    assert_eq!(
        client.send(Method::GET, "/x", None).await.unwrap_err(),
        Failure::BudgetExhausted {
            max_in_flight: 1,
            waited: Duration::from_millis(200)
        }
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    drop(held);
    assert_eq!(
        client.send(Method::GET, "/x", None).await.unwrap().body,
        b"[]"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_response_debug_shows_no_body() {
    let response = ApiResponse {
        status: StatusCode::CREATED,
        headers: HeaderMap::new(),
        body: br#"{"id":1,"secret":"Robot-S3cret-value"}"#.to_vec(),
    };
    let shown = format!("{response:?}");
    assert!(!shown.contains("S3cret"), "{shown}");
    assert!(shown.contains("body_len: 38"), "{shown}");
}
