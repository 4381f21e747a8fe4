//! The web client end to end: real headless Chromium profiles, the real relay on loopback, the
//! page and its WebAssembly client as served to members.

use crate::{browser, support};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use browser::{Browser, ChromeDriver, GatedProxy};
use peerchat_server::Admission;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::codec::{decode_client_frame, encode};
use peerchat_shared::frames::{
    ChannelSummary, ClientToRelay, MemberPresence, PresenceChange, RelayToClient, SessionId,
};
use peerchat_shared::identity::{SecretKey, Signature};
use peerchat_shared::ids::MessageIdGenerator;
use peerchat_shared::login::{verify_login, LoginNonce};
use peerchat_shared::membership::{MembershipCertificate, Role};
use peerchat_shared::message::{ClientNonce, Draft, Envelope, MessageBody};
use peerchat_shared::time::UnixMillis;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::{config, TestRelay};

fn texts(messages: &[browser::ShownMessage]) -> Vec<&str> {
    messages
        .iter()
        .map(|message| message.text.as_str())
        .collect()
}

async fn open_online(driver: &ChromeDriver, relay: &TestRelay) -> Browser {
    let browser = Browser::open(driver, &relay.url("/")).await;
    browser.wait_until_online().await;
    browser
}

#[tokio::test(flavor = "multi_thread")]
async fn two_members_chat_both_ways_and_see_each_other_come_and_go() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    let bob = open_online(&driver, &relay).await;
    ada.wait_until(
        "Ada to see Bob online",
        "return document.querySelectorAll('#members li').length === 2",
    )
    .await;

    ada.send_message("Hello Bob").await;
    bob.wait_for_message_count(1).await;
    bob.send_message("Hi Ada,\u{E008}\u{E007}\u{E008}how are you?")
        .await;
    ada.wait_for_message_count(2).await;
    bob.wait_for_message_count(2).await;

    let (seen_by_ada, seen_by_bob) = (ada.messages().await, bob.messages().await);
    assert_eq!(texts(&seen_by_ada), ["Hello Bob", "Hi Ada,\nhow are you?"]);
    assert_eq!(seen_by_ada, seen_by_bob, "both see the same conversation");
    assert_ne!(seen_by_ada[0].author, seen_by_ada[1].author);

    bob.close().await;
    ada.wait_until(
        "Ada to see Bob leave",
        "return document.querySelectorAll('#members li').length === 1",
    )
    .await;
    ada.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_and_identity_are_back_after_a_reload_even_before_the_relay_answers() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    for text in ["one", "two", "three"] {
        ada.send_message(text).await;
    }
    ada.wait_for_message_count(3).await;
    let fingerprint = ada.fingerprint().await;
    ada.wait_until(
        "the page's files to be kept for offline use",
        "return document.body.dataset.offlineShell === 'ready' && !!navigator.serviceWorker.controller",
    )
    .await;

    relay.stop().await;
    ada.wait_until(
        "the page to notice the relay is gone",
        "return document.body.dataset.connection !== 'online'",
    )
    .await;
    ada.reload().await;
    ada.wait_for_message_count(3).await;
    assert_eq!(texts(&ada.messages().await), ["one", "two", "three"]);
    assert_eq!(ada.fingerprint().await, fingerprint);
    let connection = ada.eval("return document.body.dataset.connection").await;
    assert_ne!(
        connection, "online",
        "the relay is down: history came from IndexedDB"
    );
    ada.close().await;
}

/// Ada reaches the relay through a gate, so the test decides that Bob is back before she is.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_written_while_the_relay_is_down_is_delivered_once_when_it_returns() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let address = relay.address;
    let gate = GatedProxy::start(address).await;
    let driver = ChromeDriver::start().await;
    let ada = Browser::open(&driver, &gate.url("/")).await;
    ada.wait_until_online().await;
    let bob = open_online(&driver, &relay).await;

    gate.set_open(false);
    relay.stop().await;
    ada.wait_until(
        "Ada's page to notice the relay is gone",
        "return document.body.dataset.connection !== 'online'",
    )
    .await;
    ada.send_message("written while the relay was down").await;
    ada.wait_until(
        "the message to show as pending",
        "return document.querySelectorAll('#messages > li[data-state=\"pending\"]').length === 1",
    )
    .await;

    let relay = TestRelay::start_on(address, config(Admission::Open)).await;
    bob.wait_until(
        "Bob to be back in #general",
        "return document.body.dataset.connection === 'online' && document.querySelectorAll('#members li').length === 1",
    )
    .await;
    gate.set_open(true);
    ada.wait_for_message_count(1).await;
    bob.wait_for_message_count(1).await;
    ada.send_message("and this one after").await;
    bob.wait_for_message_count(2).await;
    assert_eq!(
        texts(&bob.messages().await),
        ["written while the relay was down", "and this one after"],
        "delivered once, in order"
    );
    ada.reload().await;
    ada.wait_for_message_count(2).await;
    assert!(
        ada.messages().await.iter().all(|m| m.state == "sent"),
        "the outbox is empty"
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn markup_in_a_message_is_shown_as_text() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    let bob = open_online(&driver, &relay).await;
    let attack = "<img src=x onerror=alert(1)><script>window.injected=1</script>";
    ada.send_message(attack).await;
    bob.wait_for_message_count(1).await;
    assert_eq!(texts(&bob.messages().await), [attack]);
    let injected = bob
        .eval("return document.querySelectorAll('#messages img, #messages script').length + (window.injected ?? 0)")
        .await;
    assert_eq!(injected, 0);
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_identity_moves_a_member_to_a_new_browser_profile() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    ada.send_message("from the old browser").await;
    ada.wait_for_message_count(1).await;
    let ada_key = ada.messages().await[0].author.clone();
    ada.click("#open-settings").await;
    ada.click("#export-identity").await;
    let file = ada.downloaded_file().await;

    let new_profile = open_online(&driver, &relay).await;
    assert_ne!(new_profile.fingerprint().await, ada.fingerprint().await);
    new_profile.click("#open-settings").await;
    new_profile.choose_file("#import-identity", &file).await;
    new_profile
        .wait_until(
            "the imported identity to be in use",
            &format!(
                "return document.getElementById('fingerprint').textContent === {:?}",
                ada.fingerprint().await
            ),
        )
        .await;
    new_profile.wait_until_online().await;
    new_profile.send_message("from the new browser").await;
    ada.wait_for_message_count(2).await;
    let seen = ada.messages().await;
    assert_eq!(seen[1].text, "from the new browser");
    assert_eq!(seen[1].author, ada_key, "the same key wrote both");
    ada.close().await;
    new_profile.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_names_its_parts_for_assistive_technology_and_fits_a_phone() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    ada.wait_until(
        "the member list",
        "return document.querySelectorAll('#members li').length === 1",
    )
    .await;
    let tree = ada.accessibility_tree().await;
    let role_and_name = |node: &serde_json::Value| {
        (
            node["role"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            node["name"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let visible: Vec<&serde_json::Value> =
        tree.iter().filter(|node| node["ignored"] != true).collect();
    let has = |role: &str, name: &str| {
        visible
            .iter()
            .any(|node| role_and_name(node) == (role.to_owned(), name.to_owned()))
    };
    assert!(has("log", "#general"), "the message list is a log");
    assert!(
        has("textbox", "Message"),
        "the composer is a textbox named Message"
    );
    assert!(has("button", "Send"), "a button named Send");
    assert!(has("list", "Channels"), "a labelled channel list");
    assert!(has("list", "Online"), "a labelled member list");
    for node in &visible {
        let (role, name) = role_and_name(node);
        if ["button", "textbox", "link", "checkbox", "combobox"].contains(&role.as_str()) {
            assert!(!name.trim().is_empty(), "an unnamed {role}: {node}");
            let focusable = node["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "focusable" && p["value"]["value"] == true);
            assert!(focusable, "{role} {name:?} cannot be reached by keyboard");
        }
    }

    ada.client.set_window_size(390, 844).await.unwrap();
    let send_fits = ada
        .eval("const r = document.getElementById('send').getBoundingClientRect(); return r.width > 0 && r.right <= innerWidth && r.bottom <= innerHeight")
        .await;
    assert_eq!(send_fits, true, "the composer fits a phone screen");
    let channels_visible = "return document.getElementById('channels').offsetParent !== null";
    assert_eq!(ada.eval(channels_visible).await, false);
    ada.click("#toggle-channels").await;
    assert_eq!(
        ada.eval(channels_visible).await,
        true,
        "the channel list opens on a phone"
    );
    ada.close().await;
    relay.stop().await;
}

/// A relay that stamps one honest message and two forgeries, for the first connection only.
async fn start_forging_relay() -> std::net::SocketAddr {
    let key = Arc::new(SecretKey::from_seed([9; 32]));
    let connections = Arc::new(AtomicUsize::new(0));
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    let app = axum::Router::new()
        .route(
            "/ws",
            get(move |upgrade: WebSocketUpgrade| {
                let (key, first) = (key.clone(), connections.fetch_add(1, Ordering::SeqCst) == 0);
                async move { upgrade.on_upgrade(move |socket| forge(socket, key, first)) }
            }),
        )
        .fallback_service(tower_http::services::ServeDir::new(web));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

async fn next_client_frame(socket: &mut WebSocket) -> ClientToRelay {
    loop {
        match socket.recv().await.expect("open").expect("readable") {
            Message::Text(text) => return decode_client_frame(text.as_str()).unwrap(),
            _ => continue,
        }
    }
}

async fn send_relay_frame(socket: &mut WebSocket, frame: &RelayToClient) {
    socket
        .send(Message::Text(encode(frame).into()))
        .await
        .unwrap();
}

fn unix_now() -> UnixMillis {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    UnixMillis(since_epoch.as_millis() as u64)
}

/// Logs the page in like the real relay, then (on the first connection) sends three messages:
/// one whose text was altered after signing, one with a forged relay stamp, and an honest one.
async fn forge(mut socket: WebSocket, key: Arc<SecretKey>, first: bool) {
    let nonce = LoginNonce([5; 32]);
    let relay = key.public_key();
    send_relay_frame(
        &mut socket,
        &RelayToClient::Challenge {
            protocol: 1,
            relay,
            nonce,
        },
    )
    .await;
    let ClientToRelay::Login(login) = next_client_frame(&mut socket).await else {
        panic!("the page logs in first");
    };
    verify_login(
        &login.key.verifier().unwrap(),
        &relay,
        &nonce,
        &login.signature,
    )
    .unwrap();
    let now = unix_now();
    let general = ChannelName::new("general").unwrap();
    let welcome = RelayToClient::Welcome {
        session: SessionId(1),
        role: Role::Member,
        certificate: MembershipCertificate::issue(
            &key,
            login.key,
            Role::Member,
            now,
            now.saturating_add_millis(86_400_000),
        ),
        channels: vec![ChannelSummary {
            name: general.clone(),
            online: 1,
            default: true,
        }],
        ice_servers: vec![],
    };
    send_relay_frame(&mut socket, &welcome).await;
    let ClientToRelay::Join { channel } = next_client_frame(&mut socket).await else {
        panic!("the page joins the default channel");
    };
    let me = MemberPresence {
        key: login.key,
        session: SessionId(1),
        role: Role::Member,
        profile: None,
    };
    send_relay_frame(
        &mut socket,
        &RelayToClient::Joined {
            channel,
            members: vec![me],
        },
    )
    .await;
    if first {
        let author = SecretKey::from_seed([8; 32]);
        let mut ids = MessageIdGenerator::default();
        let mut stamp = |nonce: u8, text: &str| -> Envelope {
            let draft = Draft::sign(
                &author,
                &relay,
                general.clone(),
                ClientNonce([nonce; 16]),
                MessageBody::text(text),
            );
            let verified = draft
                .verify(&relay, &author.public_key().verifier().unwrap())
                .unwrap();
            verified.seal(ids.next(now, u128::from(nonce)).unwrap(), &key)
        };
        let mut altered = stamp(1, "what the author wrote");
        altered.body = MessageBody::text("what someone changed it to");
        let mut forged_stamp = stamp(2, "stamped by someone else");
        forged_stamp.relay_signature = Signature([3; 64]);
        let honest = stamp(3, "honest");
        for envelope in [altered, forged_stamp, honest] {
            send_relay_frame(&mut socket, &RelayToClient::Message { envelope }).await;
        }
    }
    while let Some(Ok(_)) = socket.recv().await {}
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_with_a_wrong_author_or_relay_signature_are_neither_shown_nor_stored() {
    if browser::run_sealed() {
        return;
    }
    let address = start_forging_relay().await;
    let driver = ChromeDriver::start().await;
    let ada = Browser::open(&driver, &format!("http://{address}/")).await;
    ada.wait_until_online().await;
    ada.wait_for_message_count(1).await;
    assert_eq!(texts(&ada.messages().await), ["honest"]);
    let problem = ada
        .eval("return document.getElementById('problem').textContent")
        .await;
    assert!(
        problem.as_str().unwrap().contains("discarded"),
        "the member is told: {problem}"
    );

    ada.reload().await;
    ada.wait_until_online().await;
    ada.wait_for_message_count(1).await;
    assert_eq!(
        texts(&ada.messages().await),
        ["honest"],
        "only the honest message was stored"
    );
    ada.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unread_counts_mark_other_channels_until_they_are_opened() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    let bob = open_online(&driver, &relay).await;
    ada.client
        .find(fantoccini::Locator::Css("#join-name"))
        .await
        .unwrap()
        .send_keys("random\u{E007}")
        .await
        .unwrap();
    ada.wait_until(
        "Ada to be in #random",
        "return document.getElementById('channel-title').textContent === '#random'",
    )
    .await;

    bob.send_message("psst").await;
    bob.send_message("are you there?").await;
    let badge = "document.querySelector('button[data-channel=\"general\"] .unread')";
    ada.wait_until(
        "two unread messages in #general",
        &format!("return {badge}?.textContent === '2'"),
    )
    .await;
    ada.click("button[data-channel='general']").await;
    ada.wait_for_message_count(2).await;
    assert_eq!(ada.eval(&format!("return {badge} === null")).await, true);
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

/// Keyboard focus on a channel's button survives its own and other channels' unread counts
/// changing: the list keeps its buttons and changes them in place.
#[tokio::test(flavor = "multi_thread")]
async fn a_focused_channel_button_keeps_focus_when_unread_counts_change() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    let bob = open_online(&driver, &relay).await;
    ada.client
        .find(fantoccini::Locator::Css("#join-name"))
        .await
        .unwrap()
        .send_keys("random\u{E007}")
        .await
        .unwrap();
    ada.wait_until(
        "Ada to be in #random",
        "return document.getElementById('channel-title').textContent === '#random'",
    )
    .await;

    // The focused button is remembered as an object: the check is that the very same element
    // still has focus, not merely one for the same channel.
    let focus = |channel: &str| {
        format!(
            "window.focusedButton = document.querySelector('#channels button[data-channel=\"{channel}\"]'); \
             window.focusedButton.focus(); return document.activeElement === window.focusedButton"
        )
    };
    let still_focused = "return window.focusedButton.isConnected && document.activeElement === window.focusedButton";
    let badge = "document.querySelector('#channels button[data-channel=\"general\"] .unread')";

    assert_eq!(ada.eval(&focus("general")).await, true);
    bob.send_message("first").await;
    ada.wait_until(
        "one unread message in #general",
        &format!("return {badge}?.textContent === '1'"),
    )
    .await;
    assert_eq!(
        ada.eval(still_focused).await,
        true,
        "the focused #general button keeps focus when its count appears"
    );
    bob.send_message("second").await;
    ada.wait_until(
        "two unread messages in #general",
        &format!("return {badge}?.textContent === '2'"),
    )
    .await;
    assert_eq!(
        ada.eval(still_focused).await,
        true,
        "the focused #general button keeps focus when its count changes"
    );

    assert_eq!(ada.eval(&focus("random")).await, true);
    bob.send_message("third").await;
    ada.wait_until(
        "three unread messages in #general",
        &format!("return {badge}?.textContent === '3'"),
    )
    .await;
    assert_eq!(
        ada.eval(still_focused).await,
        true,
        "the focused #random button keeps focus when #general's count changes"
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

/// The log is a live region: a new message, another member's or the reader's own (shown while
/// it is sent, then confirmed), adds one node, and the nodes already shown stay the same ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_message_adds_one_node_to_the_log_and_keeps_the_others() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    let bob = open_online(&driver, &relay).await;
    bob.send_message("one").await;
    bob.send_message("two").await;
    ada.wait_for_message_count(2).await;

    // Remembers the nodes shown and marks the first; records every node added to or removed
    // from the log itself from now on.
    let watch = "const log = document.getElementById('messages'); \
        window.shownBefore = [...log.children]; \
        log.firstElementChild.keyedMark = 'first'; \
        window.logChanges = { added: [], removed: [] }; \
        const record = (records) => records.forEach((r) => { \
          window.logChanges.added.push(...r.addedNodes); window.logChanges.removed.push(...r.removedNodes); }); \
        window.logObserver?.disconnect(); \
        window.logObserver = new MutationObserver(record); \
        window.logObserver.observe(log, { childList: true }); \
        window.recordLogChanges = () => record(window.logObserver.takeRecords()); \
        return log.children.length";
    let changes = "window.recordLogChanges(); \
        const log = document.getElementById('messages'); const now = [...log.children]; \
        const { added, removed } = window.logChanges; \
        return { \
          kept: window.shownBefore.every((node, i) => node.isConnected && now[i] === node), \
          firstMarked: log.firstElementChild.keyedMark === 'first', \
          added: added.length, removed: removed.length, \
          addedIsLast: added.length === 1 && added[0] === log.lastElementChild, \
          lastText: log.lastElementChild.querySelector('.text').textContent, \
          lastState: log.lastElementChild.dataset.state }";
    let expect = |text: &str| {
        serde_json::json!({
            "kept": true, "firstMarked": true, "added": 1, "removed": 0,
            "addedIsLast": true, "lastText": text, "lastState": "sent",
        })
    };

    assert_eq!(ada.eval(watch).await, 2);
    bob.send_message("three").await;
    ada.wait_for_message_count(3).await;
    assert_eq!(
        ada.eval(changes).await,
        expect("three"),
        "another member's message"
    );

    assert_eq!(ada.eval(watch).await, 3);
    ada.send_message("four").await;
    ada.wait_for_message_count(4).await;
    assert_eq!(
        ada.eval(changes).await,
        expect("four"),
        "the reader's own message: its node is shown while sending, then confirmed in place"
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_channel_is_joined_when_the_member_opens_it_and_kept_from_then_on() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let [mut ada] = relay.members_in("general", [60]).await;
    ada.join("random").await;
    let joined_random = |frame: &RelayToClient| {
        matches!(frame, RelayToClient::Presence { channel, change: PresenceChange::Joined, .. }
            if channel.as_str() == "random")
    };

    let bob = open_online(&driver, &relay).await;
    let offered = "document.querySelector('#more-channels button[data-channel=\"random\"]')";
    bob.wait_until("#random offered", &format!("return {offered} !== null"))
        .await;
    // Bob's message in #general comes after any join his page sent at login.
    bob.send_message("hello").await;
    let seen_first = ada
        .next_matching(|frame| {
            joined_random(frame) || matches!(frame, RelayToClient::Message { .. })
        })
        .await;
    assert!(
        matches!(seen_first, RelayToClient::Message { .. }),
        "Bob was put in #random without choosing it: {seen_first:?}"
    );

    bob.click("#more-channels button[data-channel='random']")
        .await;
    ada.next_matching(joined_random).await;
    bob.wait_until(
        "#random among Bob's channels",
        "return document.getElementById('channel-title').textContent === '#random' \
         && document.querySelector('#channels button[data-channel=\"random\"]') !== null",
    )
    .await;
    assert_eq!(
        bob.eval("return document.activeElement === document.querySelector('#channels button[data-channel=\"random\"]')")
            .await,
        true,
        "the focus follows the channel from the listed ones to the member's"
    );

    // The choice is kept: after a reload the page joins #random again by itself.
    bob.reload().await;
    ada.next_matching(joined_random).await;
    bob.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_older_messages_is_not_interrupted_by_new_ones() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(support::unthrottled_config()).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    let mut poster = relay.member(40).await;
    poster.join("general").await;
    poster.post_numbered("general", 0..60).await;
    ada.wait_for_message_count(60).await;
    let at_bottom = "const log = document.getElementById('messages'); return log.scrollHeight - log.scrollTop - log.clientHeight < 48";
    assert_eq!(
        ada.eval(at_bottom).await,
        true,
        "new messages scroll into view"
    );

    ada.eval("document.getElementById('messages').scrollTop = 0; return null")
        .await;
    let draft = poster.draft("general", 200, "while Ada reads up");
    poster.send(&ClientToRelay::Send { draft }).await;
    ada.wait_for_message_count(61).await;
    let scroll_top = ada
        .eval("return document.getElementById('messages').scrollTop")
        .await;
    assert_eq!(scroll_top, 0, "the reader stays where they were");
    assert_eq!(
        ada.eval("return document.getElementById('jump-to-latest').hidden")
            .await,
        false
    );
    ada.click("#jump-to-latest").await;
    assert_eq!(ada.eval(at_bottom).await, true);
    ada.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_history_keeps_a_bounded_log_that_scrolls_back_through_the_store() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(support::unthrottled_config()).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay).await;
    let total = browser::LOG_WINDOW + 200;
    ada.receive_numbered(&relay, "general", total).await;
    let shown = ada.messages().await;
    assert_eq!(shown.len(), browser::LOG_WINDOW, "the oldest left the log");
    assert_eq!(shown[0].text, "message 200");

    ada.eval("document.getElementById('messages').scrollTop = 0; return null")
        .await;
    ada.wait_until(
        "the oldest messages to load back from IndexedDB",
        "return document.querySelector('#messages > li .text')?.textContent === 'message 0'",
    )
    .await;
    let shown = ada.messages().await;
    assert_eq!(shown.len(), browser::LOG_WINDOW, "the newest left the log");
    assert_eq!(shown[browser::LOG_WINDOW - 1].text, "message 999");
    assert_eq!(
        ada.eval("return document.getElementById('jump-to-latest').hidden")
            .await,
        false
    );

    ada.click("#jump-to-latest").await;
    ada.wait_for_newest_shown(browser::LOG_WINDOW, &format!("message {}", total - 1))
        .await;
    ada.close().await;
    relay.stop().await;
}
