//! Real headless Chromium driven through ChromeDriver (fantoccini): one ChromeDriver per test,
//! one fresh browser profile per [`Browser`], and helpers that read the chat page's DOM.
//! Every browser test runs in a network namespace of its own ([`run_sealed`]), so the pages'
//! WebRTC links, like everything else, never leave the machine.
#![allow(dead_code)]

use crate::support::TestRelay;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use peerchat_shared::frames::RelayToClient;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Guards against a hung test; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// Messages posted at a time by [`Browser::receive_numbered`]: well under the relay's 256
/// frames queued per connection.
const PACED_BATCH: usize = 100;

/// Most messages the page's log holds (`LOG_WINDOW` in web/app.js).
pub const LOG_WINDOW: usize = 1_000;

/// Set in the copy of a test that runs inside its own network namespace.
const SEALED: &str = "PEERCHAT_TEST_SEALED_NAMESPACE";

/// Runs the calling test again, alone, in a new network namespace (`unshare --net`, inside a
/// user namespace so that no privilege is needed), and fails if that run fails. Returns true in the outer run, which then has nothing more to do, and
/// false inside the namespace, where the test proceeds. libtest names each test's thread after
/// the test, and `#[tokio::test]` runs its body on that thread.
///
/// The namespace has loopback and a veth pair whose one end holds 10.77.0.1 and the default
/// route: headless Chromium gathers no ICE candidate on loopback alone (it looks for the
/// interface of the default route), and with this it gathers 10.77.0.1, which is local to the
/// namespace. Nothing in it reaches any other network.
pub fn run_sealed() -> bool {
    run_sealed_in(
        "ip link set lo up && ip link add pc0 type veth peer name pc1 \
         && ip addr add 10.77.0.1/24 dev pc0 && ip link set pc0 up && ip link set pc1 up \
         && ip route add default dev pc0",
    )
}

/// As [`run_sealed`], in a namespace with loopback alone: the browsers in it gather no ICE
/// candidate at all (Chromium offers none on loopback), like a browser whose every
/// interface is off limits to WebRTC. Pages still reach the relay on 127.0.0.1.
pub fn run_sealed_without_ice_candidates() -> bool {
    run_sealed_in("ip link set lo up")
}

/// Runs the calling test again inside a new user and network namespace set up by `network`.
#[allow(
    clippy::print_stdout,
    reason = "the inner run's report, which the `cargo xtask bench` commands read"
)]
fn run_sealed_in(network: &str) -> bool {
    if std::env::var_os(SEALED).is_some() {
        return false;
    }
    let test = std::thread::current()
        .name()
        .expect("libtest names the test thread")
        .to_owned();
    let output = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--net",
            "--",
            "sh",
            "-c",
            &format!("{network} && exec \"$0\" \"$@\""),
        ])
        .arg(std::env::current_exe().expect("the test binary's path"))
        // An ignored test (a benchmark) runs inside too: the outer run chose to run it.
        .args([
            test.as_str(),
            "--exact",
            "--include-ignored",
            "--test-threads=1",
        ])
        .arg("--nocapture")
        .env(SEALED, "1")
        .output()
        .expect("unshare and ip run (util-linux and iproute2)");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let ran = String::from_utf8_lossy(&output.stdout).contains("1 passed");
    assert!(
        output.status.success() && ran,
        "{test} failed inside its network namespace ({})",
        output.status
    );
    true
}

/// A ChromeDriver process on a loopback port, killed when dropped.
pub struct ChromeDriver {
    child: Child,
    url: String,
    /// Chromium's own temporary files (it leaves some behind when killed), removed on drop.
    _temp: tempfile::TempDir,
}

impl ChromeDriver {
    pub async fn start() -> Self {
        // Two providers are compiled in (fantoccini's and webrtc's): choose one for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let temp = tempfile::tempdir().unwrap();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("TMPDIR", temp.path())
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
        Self {
            child,
            url,
            _temp: temp,
        }
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
    profile: tempfile::TempDir,
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

/// What [`Browser::watch_until_ready`] saw.
pub struct TransferWatch {
    pub elapsed: Duration,
    /// The most [`Browser::renderer_memory_kib`] said meanwhile.
    pub peak_renderer_kib: u64,
}

/// A process as /proc describes it.
struct ProcessInfo {
    pid: u32,
    parent: u32,
    command: String,
    anonymous_kib: u64,
}

/// Every process this user can read in /proc.
fn processes() -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .and_then(|value| value.split_whitespace().next())
                    .and_then(|value| value.parse::<u64>().ok())
            };
            let command = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some(ProcessInfo {
                pid,
                parent: u32::try_from(field("PPid:")?).ok()?,
                command: String::from_utf8_lossy(&command).replace('\0', " "),
                anonymous_kib: field("RssAnon:").unwrap_or(0),
            })
        })
        .collect()
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
    /// A new profile (fresh IndexedDB) with `url` open. Its ICE candidates are plain addresses
    /// (not mDNS names, which nothing resolves in the namespace).
    pub async fn open(driver: &ChromeDriver, url: &str) -> Self {
        Self::open_with(
            driver,
            url,
            &["--disable-features=WebRtcHideLocalIpsWithMdns"],
            None,
        )
        .await
    }

    /// A new profile whose pages have no `RTCPeerConnection` (removed before any script of
    /// the page runs), so no data channel can open, as in browsers with WebRTC turned off.
    pub async fn open_without_data_channels(driver: &ChromeDriver, url: &str) -> Self {
        Self::open_with(
            driver,
            url,
            &[],
            Some("delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"),
        )
        .await
    }

    /// `before_page_scripts` runs in every page of the profile before the page's own scripts.
    async fn open_with(
        driver: &ChromeDriver,
        url: &str,
        extra_args: &[&str],
        before_page_scripts: Option<&str>,
    ) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        // Flags for a root user on a machine without a network (TOOLCHAIN.md).
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,800",
        ]
        .iter()
        .chain(extra_args)
        .map(|arg| (*arg).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "goog:chromeOptions": {
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                    // A test clicks through a script, without the gesture Chrome wants for a
                    // second download from one page.
                    "profile.default_content_setting_values.automatic_downloads": 1,
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
        if let Some(source) = before_page_scripts {
            client
                .issue_cmd(DevToolsCommand {
                    method: "Page.addScriptToEvaluateOnNewDocument",
                    params: json!({ "source": source }),
                })
                .await
                .unwrap();
        }
        client.goto(url).await.unwrap();
        Self {
            client,
            downloads,
            profile,
        }
    }

    /// Milliseconds from coming online to the first envelope from a peer, from the first to
    /// the last, and from online to the last (the page's `data-*-ms` milestones).
    pub async fn peer_history_timings(&self) -> (f64, f64, f64) {
        let mut milestones = [0.0; 3];
        for (value, name) in
            milestones
                .iter_mut()
                .zip(["onlineMs", "firstPeerEnvelopeMs", "lastPeerEnvelopeMs"])
        {
            let script = format!("return Number(document.body.dataset.{name})");
            *value = self.eval(&script).await.as_f64().unwrap();
        }
        let [online, first, last] = milestones;
        (first - online, last - first, last - online)
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
                    .eval("return document.body.dataset.connection + ' / ' + document.getElementById('problem').textContent + ' / ' + [...document.querySelectorAll('#messages > li')].slice(-10).map(li => li.dataset.state + ':' + li.textContent).join(' | ') + ' / ' + JSON.stringify(document.body.dataset)")
                    .await;
                panic!("gave up waiting for {what}; page state: {state}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the page is online and in its channel: the member list shows this member,
    /// which the relay's `joined` frame brings. Being online alone is not enough for a test
    /// that then posts from elsewhere: the page sends its `join` only after IndexedDB writes,
    /// and the relay keeps nothing for a member who joins late.
    pub async fn wait_until_online(&self) {
        self.wait_until(
            "the page to be online and in its channel",
            "return document.body.dataset.connection === 'online' \
             && [...document.querySelectorAll('#members li')].some(li => li.textContent.endsWith('(you)'))",
        )
        .await;
    }

    pub async fn wait_for_message_count(&self, count: usize) {
        self.wait_until(
            &format!("{count} messages shown"),
            &format!(
                "return document.querySelectorAll('#messages > li[data-state=\"sent\"]').length === {count}"
            ),
        )
        .await;
    }

    /// Has fresh members post `message 0` … `message {count - 1}` to `channel` and waits until
    /// this page, which showed no message before, shows the newest of them (all, up to the
    /// page's [`LOG_WINDOW`]). They go out in batches of [`PACED_BATCH`], each once the page
    /// shows the one before: the relay's queue towards the page (256 frames) never fills, so
    /// the page is never dropped as a slow reader (the relay keeps nothing, so a dropped page
    /// would miss messages for good). A fresh connection per batch: one left unread while the
    /// page catches up would be closed by the relay as idle.
    pub async fn receive_numbered(&self, relay: &TestRelay, channel: &str, count: usize) {
        for batch_start in (0..count).step_by(PACED_BATCH) {
            let batch_end = (batch_start + PACED_BATCH).min(count);
            let mut poster = relay.member(40).await;
            poster.join(channel).await;
            poster.post_numbered(channel, batch_start..batch_end).await;
            let (acks, others): (Vec<_>, Vec<_>) = poster
                .drain()
                .await
                .into_iter()
                .partition(|frame| matches!(frame, RelayToClient::Ack { .. }));
            assert_eq!(
                acks.len(),
                batch_end - batch_start,
                "not acknowledged: {others:?}"
            );
            drop(poster);
            self.wait_for_newest_shown(
                batch_end.min(LOG_WINDOW),
                &format!("message {}", batch_end - 1),
            )
            .await;
        }
    }

    /// Waits until the log shows `count` sent messages, the last of them reading `newest`.
    pub async fn wait_for_newest_shown(&self, count: usize, newest: &str) {
        let newest = serde_json::to_string(newest).unwrap();
        self.wait_until(
            &format!("{count} messages shown, the newest {newest}"),
            &format!(
                "const shown = document.querySelectorAll('#messages > li[data-state=\"sent\"]'); \
                 return shown.length === {count} && shown[{count} - 1].querySelector('.text').textContent === {newest}"
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
                "return [...document.querySelectorAll('#messages > li')].map(li => \
                 [li.querySelector('.text')?.textContent ?? '', li.dataset.state, li.dataset.author])",
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

    /// A `data-` attribute of the page's body (test hooks the page keeps up to date).
    pub async fn dataset(&self, name: &str) -> String {
        self.eval(&format!(
            "return String(document.body.dataset.{name} ?? '')"
        ))
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// The ids of the messages shown, in order.
    pub async fn message_ids(&self) -> Vec<String> {
        let ids = self
            .eval("return [...document.querySelectorAll('#messages > li')].map(li => li.dataset.id ?? '')")
            .await;
        ids.as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
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

    /// The page's own memory: the anonymous resident memory (heap, JS and wasm, not the
    /// shared code every process maps) of this profile's renderer processes, in KiB, read from
    /// /proc (the processes that descend from the Chromium whose `--user-data-dir` is this
    /// profile and run with `--type=renderer`).
    pub fn renderer_memory_kib(&self) -> u64 {
        let marker = format!("--user-data-dir={}", self.profile.path().display());
        let processes = processes();
        let Some(main) = processes.iter().find(|process| {
            process.command.contains(&marker) && !process.command.contains("--type=")
        }) else {
            return 0;
        };
        let mut family = vec![main.pid];
        let mut grew = true;
        while grew {
            grew = false;
            for process in &processes {
                if family.contains(&process.parent) && !family.contains(&process.pid) {
                    family.push(process.pid);
                    grew = true;
                }
            }
        }
        processes
            .iter()
            .filter(|process| family.contains(&process.pid))
            .filter(|process| process.command.contains("--type=renderer"))
            .map(|process| process.anonymous_kib)
            .sum()
    }

    /// Polls the attachment `name` until it is here, checked, while sampling the page's memory;
    /// fails only when its held chunks stop growing for [`PATIENCE`] (a benchmark's file is
    /// large). The time is from its first chunk kept (to the poll's precision).
    pub async fn watch_until_ready(&self, name: &str) -> TransferWatch {
        let state = format!(
            "const li = [...document.querySelectorAll('#messages li.attachment')].find(li => \
             li.querySelector('.file-name')?.textContent === {name:?}); \
             return [li.dataset.state, Number(li.dataset.held)];"
        );
        let mut first_chunk = None;
        let mut held = 0;
        let mut last_progress = tokio::time::Instant::now();
        let mut peak_renderer_kib = 0;
        loop {
            let now = tokio::time::Instant::now();
            let value = self.eval(&state).await;
            peak_renderer_kib = peak_renderer_kib.max(self.renderer_memory_kib());
            let now_held = value[1].as_u64().unwrap_or(0);
            if now_held > 0 {
                first_chunk.get_or_insert(now);
            }
            if now_held != held {
                held = now_held;
                last_progress = now;
            }
            if value[0] == "ready" {
                return TransferWatch {
                    elapsed: first_chunk.unwrap_or(now).elapsed(),
                    peak_renderer_kib,
                };
            }
            assert!(
                last_progress.elapsed() < PATIENCE,
                "{name} stopped arriving at {held} chunks"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

/// A TCP proxy on loopback whose gate the test opens and closes: closing it cuts the
/// connections through it, and while closed it hangs up on every new one, so the browsers
/// behind it cannot reach the relay and others can.
pub struct GatedProxy {
    pub address: std::net::SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
}

impl GatedProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (open, gate) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*gate.borrow() {
                    continue;
                }
                let mut gate = gate.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = gate.wait_for(|open| !*open) => {}
                        }
                    }
                });
            }
        });
        Self { address, open }
    }

    pub fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// A TCP proxy on loopback that counts the bytes the relay sends back on plain HTTP
/// connections (WebSocket connections, which open with `GET /ws`, are passed through uncounted):
/// what loading the page costs on the wire, headers included.
pub struct CountingProxy {
    pub address: std::net::SocketAddr,
    http_bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountingProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let http_bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = http_bytes.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut from_browser, mut to_browser) = inbound.into_split();
                    let (mut from_relay, mut to_relay) = outbound.into_split();
                    let mut first = vec![0; 4096];
                    let Ok(read) = from_browser.read(&mut first).await else {
                        return;
                    };
                    let counted = !first[..read].starts_with(b"GET /ws");
                    if to_relay.write_all(&first[..read]).await.is_err() {
                        return;
                    }
                    let upstream = tokio::io::copy(&mut from_browser, &mut to_relay);
                    let downstream = async {
                        let mut buffer = vec![0; 16 * 1024];
                        while let Ok(read @ 1..) = from_relay.read(&mut buffer).await {
                            if counted {
                                counter.fetch_add(read as u64, Ordering::Relaxed);
                            }
                            if to_browser.write_all(&buffer[..read]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! {
                        _ = upstream => {}
                        () = downstream => {}
                    }
                });
            }
        });
        Self {
            address,
            http_bytes,
        }
    }

    /// Bytes counted since the last call.
    pub fn take_http_bytes(&self) -> u64 {
        self.http_bytes
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}
