//! The relay's HTTP surface over a real loopback socket: health, discovery, metrics, the web
//! client's files, and security headers.

mod support;

use peerchat_server::Admission;
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

#[tokio::test]
async fn relay_serves_the_web_client_built_into_the_binary() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    let fetch = |path: &'static str| {
        let url = relay.url(path);
        async move {
            let response = reqwest::get(url).await.unwrap();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|value| value.to_str().unwrap().to_owned());
            (
                response.status().as_u16(),
                content_type,
                response.bytes().await.unwrap(),
            )
        }
    };
    let (status, content_type, body) = fetch("/").await;
    assert_eq!((status, content_type.as_deref()), (200, Some("text/html")));
    assert!(String::from_utf8_lossy(&body).contains("<title>peerchat</title>"));
    let (status, content_type, _) = fetch("/app.js").await;
    assert_eq!(
        (status, content_type.as_deref()),
        (200, Some("text/javascript"))
    );
    // Built by `cargo xtask web`, which `cargo xtask test` runs before the tests.
    let (status, content_type, wasm) = fetch("/pkg/peerchat_client_wasm_bg.wasm").await;
    assert_eq!(
        (status, content_type.as_deref()),
        (200, Some("application/wasm")),
        "run `cargo xtask web` first"
    );
    assert_eq!(&wasm[..4], b"\0asm");
    assert_eq!(fetch("/../Cargo.toml").await.0, 404);
    relay.stop().await;
}
