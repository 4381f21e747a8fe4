//! Joining from the web page: invite links on an invite-only relay, the relay key pinned at first
//! contact, and the member's display name as others see it.

use crate::{browser, support};

use browser::{Browser, ChromeDriver};
use peerchat_server::Admission;
use peerchat_shared::identity::SecretKey;
use peerchat_shared::membership::{InviteToken, Role};
use peerchat_shared::time::UnixMillis;
use support::{config, TestRelay};

#[tokio::test(flavor = "multi_thread")]
async fn an_invite_link_admits_a_new_member_who_stays_admitted_without_it() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::InviteOnly)).await;
    let driver = ChromeDriver::start().await;

    let stranger = Browser::open(&driver, &relay.url("/")).await;
    stranger
        .wait_until(
            "the stranger to be refused",
            "return document.body.dataset.connection === 'stopped'",
        )
        .await;
    let refusal = stranger
        .eval("return document.getElementById('problem').textContent")
        .await;
    assert!(
        refusal.as_str().unwrap().contains("refused"),
        "the reason is shown: {refusal}"
    );

    let invite = InviteToken::mint(
        &relay.key,
        [4; 16],
        Role::Member,
        1,
        UnixMillis(u64::MAX / 2),
    );
    let invited = Browser::open(&driver, &relay.url(&format!("/#invite={invite}"))).await;
    invited.wait_until_online().await;
    invited
        .wait_until(
            "the invite to leave the address bar",
            "return location.hash === ''",
        )
        .await;
    invited.reload().await;
    invited.wait_until_online().await;
    stranger.close().await;
    invited.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_changes_its_key_is_refused_with_both_keys_shown() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let address = relay.address;
    let genuine = relay.key.public_key();
    let driver = ChromeDriver::start().await;
    let ada = Browser::open(&driver, &relay.url("/")).await;
    ada.wait_until_online().await;
    relay.stop().await;

    let mut impostor_config = config(Admission::Open);
    impostor_config.signing_key = SecretKey::from_seed([66; 32]);
    let impostor = impostor_config.signing_key.public_key();
    let relay = TestRelay::start_on(address, impostor_config).await;
    ada.wait_until(
        "the page to stop",
        "return document.body.dataset.connection === 'stopped'",
    )
    .await;
    let problem = ada
        .eval("return document.getElementById('problem').textContent")
        .await;
    let problem = problem.as_str().unwrap();
    assert!(problem.contains(&genuine.to_string()), "{problem}");
    assert!(problem.contains(&impostor.to_string()), "{problem}");
    assert!(
        relay.metrics().await.contains("peerchat_sessions 0"),
        "nothing was sent to the impostor"
    );
    ada.close().await;
    relay.stop().await;
}

/// Opens the settings and submits `name` as the display name.
async fn set_display_name(page: &Browser, name: &str) {
    page.click("#open-settings").await;
    page.client
        .find(fantoccini::Locator::Css("#display-name"))
        .await
        .unwrap()
        .send_keys(&format!("{name}\u{E007}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_display_name_shows_in_the_member_list_and_on_messages() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = Browser::open(&driver, &relay.url("/")).await;
    ada.wait_until_online().await;
    let bob = Browser::open(&driver, &relay.url("/")).await;
    bob.wait_until_online().await;
    ada.send_message("before I had a name").await;
    bob.wait_for_message_count(1).await;

    let name = "Ada <b>Lovelace</b>";
    set_display_name(&ada, name).await;
    bob.wait_until(
        "Bob to see Ada's name in the member list",
        &format!("return [...document.querySelectorAll('#members li')].some(li => li.textContent === {name:?})"),
    )
    .await;
    bob.wait_until(
        "Bob to see Ada's name on her message",
        &format!("return document.querySelector('#messages .author').textContent === {name:?}"),
    )
    .await;
    ada.reload().await;
    ada.wait_until_online().await;
    ada.wait_until(
        "Ada's name to be kept",
        &format!("return document.querySelector('#messages .author').textContent === {name:?}"),
    )
    .await;

    // Bob takes the same name: each is then shown with the start of their key's fingerprint.
    set_display_name(&bob, name).await;
    for page in [&ada, &bob] {
        page.wait_until(
            "both to be told apart in the member list",
            &format!(
                "const names = [...document.querySelectorAll('#members li .member-name')].map(n => n.textContent.replace(' (you)', '')); \
                 return names.length === 2 && names.every(n => n.startsWith({name:?} + ' · ')) && names[0] !== names[1]"
            ),
        )
        .await;
    }
    bob.wait_until(
        "Ada's message to carry her fingerprint",
        &format!("return document.querySelector('#messages .author').textContent.startsWith({name:?} + ' · ')"),
    )
    .await;
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}
