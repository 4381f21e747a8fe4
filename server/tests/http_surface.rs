//! The relay's HTTP surface over a real loopback socket: health check and the web client's files.

use peerchat_server::{run, RelayConfig};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn relay_serves_health_check_and_web_client_files() {
    let web_dir = std::env::temp_dir().join(format!("peerchat-web-{}", std::process::id()));
    std::fs::create_dir_all(&web_dir).unwrap();
    std::fs::write(web_dir.join("index.html"), "<title>peerchat</title>").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(run(
        listener,
        RelayConfig {
            web_dir: web_dir.clone(),
        },
        shutdown.clone(),
    ));

    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let index = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(index.text().await.unwrap(), "<title>peerchat</title>");
    assert_eq!(
        reqwest::get(format!("{base}/missing"))
            .await
            .unwrap()
            .status(),
        404
    );

    shutdown.cancel();
    relay.await.unwrap().unwrap();
    std::fs::remove_dir_all(web_dir).unwrap();
}
