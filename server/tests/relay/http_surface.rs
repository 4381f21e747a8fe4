//! The relay's HTTP surface over a real loopback socket: health, discovery, metrics, the web
//! client's files, and security headers.

use crate::support;

use peerchat_server::Admission;
use reqwest::header::HeaderMap;
use support::{config, TestRelay};

#[tokio::test]
async fn relay_serves_health_discovery_metrics_and_web_files_with_security_headers() {
    let web_dir = tempfile::tempdir().unwrap();
    std::fs::write(web_dir.path().join("index.html"), "<title>peerchat</title>").unwrap();
    let mut relay_config = config(Admission::InviteOnly);
    relay_config.web_dir = Some(web_dir.path().to_path_buf());
    let relay = TestRelay::start(relay_config).await;

    let health = reqwest::get(relay.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let index = reqwest::get(relay.url("/")).await.unwrap();
    let headers = index.headers().clone();
    assert_eq!(index.text().await.unwrap(), "<title>peerchat</title>");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        reqwest::get(relay.url("/missing")).await.unwrap().status(),
        404
    );

    let discovery: serde_json::Value = serde_json::from_str(
        &reqwest::get(relay.url("/.well-known/peerchat"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(discovery["protocol"], 1);
    assert_eq!(discovery["admission"], "invite_only");
    assert_eq!(discovery["relay_key"], relay.key.public_key().to_string());

    let (_, refused) = support::TestClient::login(&relay, 1, support::Credentials::None).await;
    assert!(refused.is_err());
    let metrics = relay.metrics().await;
    assert!(metrics.contains("peerchat_sessions 0"), "{metrics}");
    assert!(
        metrics.contains("peerchat_rejections_total{reason=\"not_admitted\"} 1"),
        "{metrics}"
    );
    relay.stop().await;
}

/// A GET over real HTTP with these request headers: status, response headers, body as sent.
async fn get(relay: &TestRelay, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
    let mut request = reqwest::Client::new().get(relay.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map_or("", |value| value.to_str().unwrap())
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    brotli::BrotliDecompress(&mut &bytes[..], &mut plain).unwrap();
    plain
}

fn ungzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut plain).unwrap();
    plain
}

/// The bundle's hashed files, as the service worker lists them (`const ASSETS = [...]`).
async fn hashed_files(relay: &TestRelay) -> Vec<String> {
    let (_, _, worker) = get(relay, "/sw.js", &[]).await;
    let worker = String::from_utf8(worker).unwrap();
    let list = worker
        .lines()
        .find_map(|line| line.strip_prefix("const ASSETS = "))
        .expect("sw.js lists the hashed files");
    serde_json::from_str(list.trim_end_matches(';')).unwrap()
}

// The web bundle is built by `cargo xtask web`, which `cargo xtask test` runs before the tests.
#[tokio::test]
async fn the_page_is_served_precompressed_by_accept_encoding_with_hashed_files_cached_for_good() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    let (status, headers, page) = get(
        &relay,
        "/",
        &[("accept-encoding", "gzip, deflate, br, zstd")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), "br");
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert_eq!(header(&headers, "vary"), "accept-encoding");
    let page = String::from_utf8(unbrotli(&page)).unwrap();
    assert!(page.contains("<title>peerchat</title>"));

    let files = hashed_files(&relay).await;
    let wasm = files
        .iter()
        .find(|file| file.ends_with(".wasm"))
        .expect("a wasm file");
    assert!(
        wasm.starts_with("assets/peerchat_client_wasm_bg."),
        "{wasm}"
    );
    let app = files
        .iter()
        .find(|file| file.starts_with("assets/app."))
        .unwrap();
    assert!(
        page.contains(&format!("src=\"{app}\"")),
        "index.html loads {app}"
    );

    let (status, plain_headers, plain) = get(&relay, &format!("/{wasm}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(&plain[..4], b"\0asm");
    assert_eq!(header(&plain_headers, "content-encoding"), "");
    assert_eq!(header(&plain_headers, "content-type"), "application/wasm");
    let (_, brotli_headers, brotli) = get(
        &relay,
        &format!("/{wasm}"),
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(header(&brotli_headers, "content-encoding"), "br");
    assert_eq!(unbrotli(&brotli), plain);
    assert!(
        brotli.len() * 2 < plain.len(),
        "brotli saves more than half"
    );
    let (_, gzip_headers, gzip) = get(
        &relay,
        &format!("/{wasm}"),
        &[("accept-encoding", "gzip, br;q=0")],
    )
    .await;
    assert_eq!(header(&gzip_headers, "content-encoding"), "gzip");
    assert_eq!(ungzip(&gzip), plain);
    for headers in [&plain_headers, &brotli_headers, &gzip_headers] {
        assert_eq!(
            header(headers, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(headers, "vary"), "accept-encoding");
    }
    let tags = [&plain_headers, &brotli_headers, &gzip_headers]
        .map(|headers| header(headers, "etag").to_owned());
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "one ETag per form: {tags:?}"
    );

    assert_eq!(get(&relay, "/../Cargo.toml", &[]).await.0, 404);
    assert_eq!(
        get(&relay, &format!("/{wasm}.br"), &[]).await.0,
        404,
        "compressed forms are not files of their own"
    );
    assert_eq!(
        get(&relay, "/app.js", &[]).await.0,
        404,
        "only hashed names are served"
    );
    let post = reqwest::Client::new()
        .post(relay.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    relay.stop().await;
}

#[tokio::test]
async fn a_page_revalidated_with_its_etag_is_not_sent_again() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    for encoding in ["br", "gzip", "identity"] {
        let accept = [("accept-encoding", encoding)];
        let (status, headers, body) = get(&relay, "/", &accept).await;
        assert_eq!(status, 200);
        assert!(!body.is_empty());
        let etag = header(&headers, "etag").to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "a strong ETag: {etag}"
        );

        let (status, revalidated, body) =
            get(&relay, "/", &[accept[0], ("if-none-match", &etag)]).await;
        assert_eq!(status, 304, "{encoding}");
        assert!(body.is_empty());
        assert_eq!(header(&revalidated, "etag"), etag);
        assert_eq!(header(&revalidated, "cache-control"), "no-cache");

        let weak = format!("\"stale\", W/{etag}");
        assert_eq!(
            get(&relay, "/", &[accept[0], ("if-none-match", &weak)])
                .await
                .0,
            304
        );
        let (status, _, body) =
            get(&relay, "/", &[accept[0], ("if-none-match", "\"stale\"")]).await;
        assert_eq!(status, 200);
        assert!(!body.is_empty());
    }
    let (_, brotli, _) = get(&relay, "/", &[("accept-encoding", "br")]).await;
    let brotli_tag = header(&brotli, "etag").to_owned();
    let (status, _, _) = get(
        &relay,
        "/",
        &[("accept-encoding", "gzip"), ("if-none-match", &brotli_tag)],
    )
    .await;
    assert_eq!(
        status, 200,
        "the brotli form's ETag does not validate the gzip form"
    );
    relay.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_headers_never_finish_is_closed_after_the_header_time_out() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut relay_config = config(Admission::Open);
    relay_config.limits.header_read_timeout = std::time::Duration::from_millis(500);
    let relay = TestRelay::start(relay_config).await;
    let mut stream = tokio::net::TcpStream::connect(relay.address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(closed.is_ok(), "the relay kept the half-sent request open");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    relay.stop().await;
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_refused_with_431() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let relay = TestRelay::start(config(Admission::Open)).await;
    let mut stream = tokio::net::TcpStream::connect(relay.address).await.unwrap();
    let padding = "x".repeat(32 * 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Padding: {padding}\r\n\r\n");
    // The relay may stop reading once the limit is passed; the answer is what matters.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = vec![0; 64];
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(20), stream.read(&mut answer)).await;
    let answer = match read {
        Ok(Ok(length)) => String::from_utf8_lossy(&answer[..length]).into_owned(),
        other => panic!("no answer: {other:?}"),
    };
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    relay.stop().await;
}

#[tokio::test]
async fn http_connections_beyond_the_cap_wait_until_one_ends() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.max_http_connections = 4;
    relay_config.limits.header_read_timeout = std::time::Duration::from_secs(600);
    let relay = TestRelay::start(relay_config).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(relay.address).await.unwrap());
    }
    // Give the relay time to accept all four before the fifth comes.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let client = reqwest::Client::new();
    let waiting = client
        .get(relay.url("/healthz"))
        .timeout(std::time::Duration::from_millis(500))
        .send()
        .await;
    assert!(
        waiting.is_err(),
        "a fifth connection was served: {waiting:?}"
    );
    idle.pop();
    let served = client.get(relay.url("/healthz")).send().await.unwrap();
    assert_eq!(served.status(), 200);
    relay.stop().await;
}
