//! Real headless Chromium driven through ChromeDriver (fantoccini): one ChromeDriver per test,
//! one fresh browser profile per [`Browser`], and helpers that read the chat page's DOM.
//! Every page a test opens is on 127.0.0.1.
#![allow(dead_code)]

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Guards against a hung test; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// A ChromeDriver process on a loopback port, killed when dropped.
pub struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (cargo xtask setup installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(response) = reqwest::get(&status).await {
                if response.status().is_success() {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never became ready"
            );
            tokio::time::sleep(POLL).await;
        }
        Self { child, url }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser profile with the chat page open.
pub struct Browser {
    pub client: Client,
    pub downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

/// A Chrome DevTools Protocol command through ChromeDriver's `goog/cdp/execute`.
#[derive(Debug)]
struct DevToolsCommand {
    method: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for DevToolsCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.expect("a session is open");
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.method, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// A message as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownMessage {
    pub text: String,
    /// `sent`, `pending` or `failed`.
    pub state: String,
    pub author: String,
}

impl Browser {
    /// A new profile (fresh IndexedDB) with `url` open.
    pub async fn open(driver: &ChromeDriver, url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                // Flags for a root user on a machine without a network (TOOLCHAIN.md).
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1200,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("ChromeDriver starts a Chromium session");
        client.goto(url).await.unwrap();
        Self {
            client,
            downloads,
            _profile: profile,
        }
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` returns true; panics with `what` if it never does.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let state = self
                    .eval("return document.body.dataset.connection + ' / ' + document.getElementById('problem').textContent + ' / ' + [...document.querySelectorAll('#messages li')].map(li => li.dataset.state + ':' + li.textContent).join(' | ')")
                    .await;
                panic!("gave up waiting for {what}; page state: {state}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn wait_until_online(&self) {
        self.wait_until(
            "the page to be online",
            "return document.body.dataset.connection === 'online'",
        )
        .await;
    }

    pub async fn wait_for_message_count(&self, count: usize) {
        self.wait_until(
            &format!("{count} messages shown"),
            &format!(
                "return document.querySelectorAll('#messages li[data-state=\"sent\"]').length === {count}"
            ),
        )
        .await;
    }

    /// Types `text` into the composer and presses Enter.
    pub async fn send_message(&self, text: &str) {
        let composer = self
            .client
            .find(Locator::Css("textarea[aria-label='Message']"))
            .await
            .unwrap();
        composer.send_keys(text).await.unwrap();
        composer.send_keys("\u{E007}").await.unwrap();
    }

    pub async fn messages(&self) -> Vec<ShownMessage> {
        let shown = self
            .eval(
                "return [...document.querySelectorAll('#messages li')].map(li => \
                 [li.querySelector('.text').textContent, li.dataset.state, li.dataset.author])",
            )
            .await;
        shown
            .as_array()
            .unwrap()
            .iter()
            .map(|row| ShownMessage {
                text: row[0].as_str().unwrap().to_owned(),
                state: row[1].as_str().unwrap().to_owned(),
                author: row[2].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    pub async fn member_count(&self) -> u64 {
        self.eval("return document.querySelectorAll('#members li').length")
            .await
            .as_u64()
            .unwrap()
    }

    pub async fn fingerprint(&self) -> String {
        self.eval("return document.getElementById('fingerprint').textContent")
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn reload(&self) {
        self.client.refresh().await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Waits for a finished download in this profile and returns its path.
    pub async fn downloaded_file(&self) -> PathBuf {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let finished = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .flatten()
                .map(|entry| entry.path())
                .find(|path| {
                    path.extension()
                        .is_some_and(|extension| extension == "json")
                });
            if let Some(path) = finished {
                return path;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no download arrived"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Chooses `file` in the file input `css`.
    pub async fn choose_file(&self, css: &str, file: &Path) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(&file.display().to_string())
            .await
            .unwrap();
    }

    /// The page's accessibility tree as Chromium computes it (`Accessibility.getFullAXTree`).
    pub async fn accessibility_tree(&self) -> Vec<Value> {
        let tree = self
            .client
            .issue_cmd(DevToolsCommand {
                method: "Accessibility.getFullAXTree",
                params: json!({}),
            })
            .await
            .unwrap();
        tree["nodes"].as_array().cloned().unwrap_or_default()
    }

    pub async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// A TCP proxy on loopback whose gate the test opens and closes: while closed, it hangs up on
/// every new connection, so the browsers behind it cannot reach the relay and others can.
pub struct GatedProxy {
    pub address: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl GatedProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { address, open }
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}
