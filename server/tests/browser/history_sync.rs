//! History between members, end to end: real Chromium profiles in a network namespace of their
//! own with only loopback, real WebRTC data channels between them, and the real relay, which
//! keeps no history. Each test proves which path the history took: the page counts the
//! envelopes that came over data channels and over the relay, and the relay counts the peer
//! bytes it forwarded.

use crate::{browser, support};

use browser::{Browser, ChromeDriver, GatedProxy};
use peerchat_server::Admission;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::codec::{decode_peer_frame, encode};
use peerchat_shared::frames::{ClientToRelay, PresenceChange, RelayToClient};
use peerchat_shared::identity::SecretKey;
use peerchat_shared::ids::MessageIdGenerator;
use peerchat_shared::message::{ClientNonce, Draft, Envelope, MessageBody};
use peerchat_shared::peer::PeerToPeer;
use support::{config, unthrottled_config, TestClient, TestRelay};

fn texts(messages: &[browser::ShownMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|message| message.text.clone())
        .collect()
}

async fn open_online(driver: &ChromeDriver, url: &str) -> Browser {
    let browser = Browser::open(driver, url).await;
    browser.wait_until_online().await;
    browser
}

/// The relay's count of forwarded peer-frame bytes.
async fn peer_bytes_forwarded(relay: &TestRelay) -> u64 {
    let metrics = relay.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("peerchat_peer_bytes_forwarded_total "))
        .expect("the relay reports forwarded peer bytes")
        .parse()
        .unwrap()
}

async fn wait_until_up_to_date(browser: &Browser) {
    browser
        .wait_until(
            "the history to be up to date",
            "return document.body.dataset.historyState === 'up_to_date'",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newcomer_gets_the_history_from_a_member_over_a_data_channel_after_the_relay_restarts() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let address = relay.address;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let conversation: Vec<String> = (1..=12).map(|n| format!("line {n} of the chat")).collect();
    for (index, text) in conversation.iter().enumerate() {
        let writer = if index % 2 == 0 { &ada } else { &bob };
        writer.send_message(text).await;
        ada.wait_for_message_count(index + 1).await;
        bob.wait_for_message_count(index + 1).await;
    }
    ada.close().await;
    relay.stop().await;

    let relay = TestRelay::start_on(address, config(Admission::Open)).await;
    let cleo = open_online(&driver, &relay.url("/")).await;
    cleo.wait_for_message_count(conversation.len()).await;
    wait_until_up_to_date(&cleo).await;

    assert_eq!(texts(&cleo.messages().await), conversation);
    assert_eq!(cleo.dataset("envelopesOverDataChannel").await, "12");
    assert_eq!(cleo.dataset("envelopesOverRelay").await, "0");
    assert_eq!(
        peer_bytes_forwarded(&relay).await,
        0,
        "the relay (restarted, so empty) carried no history"
    );
    assert_eq!(
        cleo.eval("return document.getElementById('history-state').textContent")
            .await,
        "History up to date"
    );
    cleo.reload().await;
    cleo.wait_for_message_count(conversation.len()).await;
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_who_was_offline_gets_the_fifty_messages_it_missed_in_order_and_once() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(unthrottled_config()).await;
    let gate = GatedProxy::start(relay.address).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let cleo = open_online(&driver, &gate.url("/")).await;
    ada.send_message("before the gap").await;
    cleo.wait_for_message_count(1).await;

    gate.set_open(false);
    cleo.wait_until(
        "Cleo to be cut off",
        "return document.body.dataset.connection !== 'online'",
    )
    .await;
    let mut poster = relay.member(40).await;
    poster.join("general").await;
    poster.post_numbered("general", 0..50).await;
    poster.drain().await;
    drop(poster);
    ada.wait_for_message_count(51).await;
    bob.wait_for_message_count(51).await;

    gate.set_open(true);
    cleo.wait_until_online().await;
    cleo.wait_for_message_count(51).await;
    wait_until_up_to_date(&cleo).await;

    let expected: Vec<String> = std::iter::once("before the gap".to_owned())
        .chain((0..50).map(|n| format!("message {n}")))
        .collect();
    assert_eq!(texts(&cleo.messages().await), expected);
    let ids = cleo.message_ids().await;
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 51, "no message twice");
    assert_eq!(cleo.dataset("envelopesOverDataChannel").await, "50");
    assert_eq!(peer_bytes_forwarded(&relay).await, 0);
    for browser in [ada, bob, cleo] {
        browser.close().await;
    }
    relay.stop().await;
}

/// A member that forges history: it announces an invented message (signed by itself, with a
/// made-up relay signature) and an altered copy of a real one, and serves both when asked.
async fn play_forger(mut forger: TestClient, genuine: Envelope) {
    let fake_relay = SecretKey::from_seed([66; 32]);
    let general = ChannelName::new("general").unwrap();
    let mut ids = MessageIdGenerator::default();
    let author = forger.key.public_key().verifier().unwrap();
    let invented = Draft::sign(
        &forger.key,
        &forger.relay,
        general.clone(),
        ClientNonce([9; 16]),
        MessageBody::text("invented by the forger"),
    )
    .verify(&forger.relay, &author)
    .unwrap()
    .seal(
        ids.next(genuine.id.timestamp().saturating_add_millis(1), 7)
            .unwrap(),
        &fake_relay,
    );
    let mut altered = genuine.clone();
    altered.body = MessageBody::text("altered by the forger");
    let newcomer = loop {
        if let RelayToClient::Presence {
            change: PresenceChange::Joined,
            member,
            ..
        } = forger.next().await
        {
            break member.session;
        }
    };
    let announce = PeerToPeer::Have {
        channel: general.clone(),
        ids: vec![invented.id, altered.id],
    };
    forger
        .send(&ClientToRelay::Peer {
            to: newcomer,
            frame: encode(&announce),
        })
        .await;
    loop {
        let RelayToClient::Peer { from, frame } = forger.next().await else {
            continue;
        };
        if let Ok(PeerToPeer::Want { .. }) = decode_peer_frame(&frame) {
            let forged = PeerToPeer::Envelopes {
                channel: general.clone(),
                envelopes: vec![invented.clone(), altered.clone()],
            };
            forger
                .send(&ClientToRelay::Peer {
                    to: from.session,
                    frame: encode(&forged),
                })
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_serving_invented_or_altered_messages_has_none_of_them_stored() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let bob = open_online(&driver, &relay.url("/")).await;
    for text in ["one", "two", "three"] {
        bob.send_message(text).await;
    }
    bob.wait_for_message_count(3).await;
    let mut forger = relay.member(41).await;
    forger.join("general").await;
    forger
        .send(&ClientToRelay::Send {
            draft: forger.draft("general", 1, "genuine words of the forger"),
        })
        .await;
    let genuine = match forger
        .next_matching(|frame| matches!(frame, RelayToClient::Ack { .. }))
        .await
    {
        RelayToClient::Ack { envelope } => envelope,
        _ => unreachable!(),
    };
    bob.wait_for_message_count(4).await;
    let forger_task = tokio::spawn(play_forger(forger, genuine));

    let cleo = open_online(&driver, &relay.url("/")).await;
    cleo.wait_until(
        "Cleo to refuse the forger",
        "return document.getElementById('problem').textContent.includes('does not check out')",
    )
    .await;
    cleo.wait_for_message_count(4).await;
    wait_until_up_to_date(&cleo).await;

    let expected = ["one", "two", "three", "genuine words of the forger"];
    assert_eq!(texts(&cleo.messages().await), expected);
    cleo.reload().await;
    cleo.wait_until_online().await;
    cleo.wait_for_message_count(4).await;
    assert_eq!(
        texts(&cleo.messages().await),
        expected,
        "nothing forged was stored"
    );
    forger_task.abort();
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_data_channels_the_history_comes_through_the_relay() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let bob = open_online(&driver, &relay.url("/")).await;
    for text in ["first", "second", "third", "fourth", "fifth"] {
        bob.send_message(text).await;
    }
    bob.wait_for_message_count(5).await;

    let cleo = Browser::open_without_data_channels(&driver, &relay.url("/")).await;
    cleo.wait_until_online().await;
    cleo.wait_for_message_count(5).await;
    wait_until_up_to_date(&cleo).await;

    assert_eq!(
        texts(&cleo.messages().await),
        ["first", "second", "third", "fourth", "fifth"]
    );
    assert_eq!(cleo.dataset("envelopesOverRelay").await, "5");
    assert_eq!(cleo.dataset("envelopesOverDataChannel").await, "0");
    assert_eq!(cleo.dataset("dataChannelsOpen").await, "0");
    assert!(peer_bytes_forwarded(&relay).await > 0);
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}

async fn history_line(browser: &Browser) -> String {
    browser
        .eval("return document.getElementById('history-state').textContent")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn while_a_link_to_a_member_is_being_made_the_page_says_connecting() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    // A member whose client never answers an offer: the page's link to it stays pending.
    let mut silent = relay.member(70).await;
    silent.join("general").await;
    let driver = ChromeDriver::start().await;
    let cleo = open_online(&driver, &relay.url("/")).await;
    cleo.wait_until(
        "the history line to say connecting",
        "return document.body.dataset.historyState === 'connecting'",
    )
    .await;
    assert_eq!(history_line(&cleo).await, "Connecting to 1 peer…");
    let offer = silent
        .next_matching(|frame| matches!(frame, RelayToClient::Signal { .. }))
        .await;
    assert!(matches!(offer, RelayToClient::Signal { data, .. } if data.contains("\"offer\"")));
    cleo.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[allow(
    clippy::print_stdout,
    reason = "the time to the relay path is this test's report"
)]
async fn browsers_that_gather_no_ice_candidate_use_the_relay_path_at_once() {
    if browser::run_sealed_without_ice_candidates() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let bob = Browser::open(&driver, &relay.url("/")).await;
    bob.wait_until_online().await;
    for text in ["one", "two", "three"] {
        bob.send_message(text).await;
    }
    bob.wait_for_message_count(3).await;

    let cleo = Browser::open(&driver, &relay.url("/")).await;
    cleo.wait_until_online().await;
    cleo.wait_for_message_count(3).await;
    wait_until_up_to_date(&cleo).await;
    let millis = |name: &str| format!("return Number(document.body.dataset.{name})");
    let waited = cleo
        .eval(&millis("lastPeerEnvelopeMs"))
        .await
        .as_f64()
        .unwrap()
        - cleo.eval(&millis("onlineMs")).await.as_f64().unwrap();
    println!("no ICE candidates: history over the relay {waited:.0} ms after coming online");

    assert_eq!(texts(&cleo.messages().await), ["one", "two", "three"]);
    assert_eq!(cleo.dataset("envelopesOverRelay").await, "3");
    // The link went to the relay because no candidate was gathered, not after the time-out.
    assert_eq!(cleo.dataset("linksWithoutCandidates").await, "1");
    assert_eq!(cleo.dataset("linksTimedOut").await, "0");
    assert_eq!(bob.dataset("linksTimedOut").await, "0");
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}
