//! What opening the page costs on the wire, in Chromium: the first visit downloads the bundle
//! compressed, a repeat visit only revalidates the page (its content-hashed files come from the
//! service worker's cache), and a new deploy is picked up on the next load. The bytes are
//! printed for `cargo xtask bench page` (docs/benchmarks.md).

use crate::{browser, support};

use browser::{Browser, ChromeDriver, CountingProxy};
use peerchat_server::Admission;
use std::path::Path;
use support::{config, TestRelay};

/// The repeat-visit target (PERFORMANCE.md): a revalidated page and little else.
const REPEAT_VISIT_BYTES: u64 = 10 * 1024;

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The bytes counted from now until a second passes with none: the visit's late requests
/// (the service worker's update check) included.
async fn bytes_once_quiet(proxy: &CountingProxy) -> u64 {
    let mut total = proxy.take_http_bytes();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        match proxy.take_http_bytes() {
            0 => return total,
            more => total += more,
        }
    }
}

/// Deploys a new build into `bundle`: `app.js` under a new hashed name that marks the page
/// `data-deploy="second"`, and the page and service worker naming it. Returns the new build's
/// cache name.
fn deploy_second_build(bundle: &Path) -> String {
    let assets = bundle.join("assets");
    let old_app = std::fs::read_dir(&assets)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .find(|name| name.starts_with("app.") && name.ends_with(".js"))
        .unwrap();
    let new_app = "app.5ec0d0000000000d.js";
    let mut app = std::fs::read_to_string(assets.join(&old_app)).unwrap();
    app.push_str("\ndocument.body.dataset.deploy = \"second\";\n");
    std::fs::write(assets.join(new_app), app).unwrap();
    for file in ["index.html", "sw.js"] {
        let text = std::fs::read_to_string(bundle.join(file)).unwrap();
        let text = text.replace(&old_app, new_app);
        let text = match text.split_once("const BUILD = \"") {
            Some((before, after)) => {
                let rest = after.split_once('"').unwrap().1;
                format!("{before}const BUILD = \"second\"{rest}")
            }
            None => text,
        };
        std::fs::write(bundle.join(file), text).unwrap();
        // The old build's compressed forms would be served first: this build has none.
        for suffix in [".br", ".gz"] {
            std::fs::remove_file(bundle.join(format!("{file}{suffix}"))).unwrap();
        }
    }
    "peerchat-second".to_owned()
}

async fn cache_names(browser: &Browser) -> Vec<String> {
    let names = browser
        .client
        .execute_async("caches.keys().then(arguments[0])", vec![])
        .await
        .unwrap();
    serde_json::from_value(names).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout, reason = "the bytes are this test's report")]
async fn a_repeat_visit_revalidates_only_the_page_and_a_new_deploy_is_picked_up_on_the_next_load() {
    if browser::run_sealed() {
        return;
    }
    // The relay serves a copy of the bundle from disk, so that the test can deploy under it.
    let bundle = tempfile::tempdir().unwrap();
    copy_folder(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist"),
        bundle.path(),
    );
    let mut relay_config = config(Admission::Open);
    relay_config.web_dir = Some(bundle.path().to_path_buf());
    let relay = TestRelay::start(relay_config).await;
    let proxy = CountingProxy::start(relay.address).await;
    let driver = ChromeDriver::start().await;

    let ada = Browser::open(&driver, &proxy.url("/")).await;
    ada.wait_until_online().await;
    ada.wait_until(
        "the service worker to keep the page",
        "return document.body.dataset.offlineShell === 'ready' && !!navigator.serviceWorker.controller",
    )
    .await;
    let first_visit = bytes_once_quiet(&proxy).await;

    ada.client.goto("about:blank").await.unwrap();
    proxy.take_http_bytes();
    ada.client.goto(&proxy.url("/")).await.unwrap();
    ada.wait_until_online().await;
    let repeat_visit = bytes_once_quiet(&proxy).await;
    println!("page bytes: first_visit={first_visit} repeat_visit={repeat_visit}");
    let wasm = std::fs::read_dir(bundle.path().join("assets"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.extension()
                .is_some_and(|extension| extension == "wasm")
        })
        .unwrap();
    assert!(
        first_visit < std::fs::metadata(wasm).unwrap().len() / 2,
        "the first visit gets the bundle compressed: {first_visit} bytes"
    );
    assert!(
        repeat_visit <= REPEAT_VISIT_BYTES,
        "a repeat visit downloads no asset again: {repeat_visit} bytes"
    );

    let new_cache = deploy_second_build(bundle.path());
    ada.client.goto("about:blank").await.unwrap();
    ada.client.goto(&proxy.url("/")).await.unwrap();
    ada.wait_until(
        "the new deploy's code to run",
        "return document.body.dataset.deploy === 'second'",
    )
    .await;
    ada.wait_until_online().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while cache_names(&ada).await != [new_cache.clone()] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old build's cache was never dropped: {:?}",
            cache_names(&ada).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ada.close().await;
    relay.stop().await;
}
