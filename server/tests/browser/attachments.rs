//! Photos and files between members, end to end: real Chromium profiles in a network namespace
//! of their own, real WebRTC data channels (or the relay's `peer` frames where there are none),
//! and the real relay, which never holds a byte of a file. Each test checks the bytes a member
//! ends up with against the file's SHA-256, and which peers served them.

use crate::{browser, support};

use browser::{Browser, ChromeDriver};
use peerchat_server::Admission;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::chunk_tree::{leaf_hash, ChunkTree, CHUNK_BYTES};
use peerchat_shared::encoding::{from_base64url, to_base64url};
use peerchat_shared::frames::{ClientToRelay, PresenceChange, RelayToClient};
use peerchat_shared::message::{Attachment, ClientNonce, Draft, MessageBody, Sha256Digest};
use peerchat_shared::peer::PeerToPeer;
use peerchat_shared::transfer::{AttachmentKey, ChunkFrame};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{config, TestClient, TestRelay};

/// Guards against a hung test; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(120);

async fn open_online(driver: &ChromeDriver, url: &str) -> Browser {
    let browser = Browser::open(driver, url).await;
    browser.wait_until_online().await;
    browser
}

/// A page whose browser has no `RTCPeerConnection`: its links take the relay path.
async fn open_online_without_data_channels(driver: &ChromeDriver, url: &str) -> Browser {
    let browser = Browser::open_without_data_channels(driver, url).await;
    browser.wait_until_online().await;
    browser
}

/// A 24-bit BMP of `width` × `height` pixels in a pattern `seed` varies: a real image any
/// browser decodes, of a predictable size (54 + 3 × width × height bytes, rows padded to 4).
fn bmp(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let row = (3 * width).div_ceil(4) * 4;
    let pixels = row * height;
    let mut bytes = Vec::with_capacity(54 + pixels as usize);
    bytes.extend_from_slice(b"BM");
    bytes.extend_from_slice(&(54 + pixels).to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&54u32.to_le_bytes());
    bytes.extend_from_slice(&40u32.to_le_bytes());
    bytes.extend_from_slice(&width.to_le_bytes());
    bytes.extend_from_slice(&height.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&24u16.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&pixels.to_le_bytes());
    bytes.extend_from_slice(&[0; 16]);
    for y in 0..height {
        for x in 0..width {
            let value = x.wrapping_mul(7) ^ y.wrapping_mul(13) ^ seed;
            bytes.extend_from_slice(&[(value % 251) as u8, (x % 256) as u8, (y % 256) as u8]);
        }
        bytes.resize(bytes.len() + (row - 3 * width) as usize, 0);
    }
    bytes
}

/// `size` bytes that do not repeat within a chunk.
fn data_file(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|index| ((index * 31 + index / 977) as u8) ^ seed)
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Attaches `path` with the Attach button's file input, and waits until it is ready to send.
async fn attach(browser: &Browser, path: &Path) {
    browser.choose_file("#attach-input", path).await;
    wait_until_uploads_ready(browser, 1).await;
}

async fn wait_until_uploads_ready(browser: &Browser, count: usize) {
    browser
        .wait_until(
            &format!("{count} files ready to send"),
            &format!(
                "return document.querySelectorAll('#uploads li[data-state=\"ready\"]').length === {count}"
            ),
        )
        .await;
}

/// Waits until the attachment named `name` is in this browser, checked.
async fn wait_until_ready(browser: &Browser, name: &str) {
    browser
        .wait_until(
            &format!("{name} to be here"),
            &format!(
                "return [...document.querySelectorAll('#messages li.attachment[data-state=\"ready\"]')]\
                 .some(li => li.querySelector('img')?.alt === {name:?} \
                 || li.querySelector('.file-name')?.textContent === {name:?})"
            ),
        )
        .await;
}

/// The SHA-256 (hex) of the image `name` as the page shows it: opened in the lightbox and
/// saved from there, as a member would.
async fn shown_image_sha256(browser: &Browser, name: &str) -> String {
    let script = format!(
        "[...document.querySelectorAll('#messages li.attachment')].find(li => \
         li.querySelector('img')?.alt === {name:?}).querySelector('.image-tile').click(); \
         document.getElementById('lightbox-save').click(); \
         document.getElementById('lightbox').close(); return true;"
    );
    browser.eval(&script).await;
    sha256_hex(&saved_file(browser, name).await)
}

/// The fingerprints of the peers that served the attachment `name`, as the page shows them.
async fn served_by(browser: &Browser, name: &str) -> Vec<String> {
    let script = format!(
        "const li = [...document.querySelectorAll('#messages li.attachment')].find(li => \
         li.querySelector('img')?.alt === {name:?} || li.querySelector('.file-name')?.textContent === {name:?}); \
         return li.dataset.peers;"
    );
    let peers = browser.eval(&script).await;
    peers
        .as_str()
        .unwrap()
        .split(',')
        .filter(|peer| !peer.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Clicks the button of the file attachment `name` (Download, Cancel or Save).
async fn click_file_action(browser: &Browser, name: &str) {
    let script = format!(
        "const li = [...document.querySelectorAll('#messages li.attachment.file')].find(li => \
         li.querySelector('.file-name').textContent === {name:?}); \
         li.querySelector('.file-action').click(); return true;"
    );
    browser.eval(&script).await;
}

/// Waits for `name` to be saved in this profile's downloads and returns its bytes.
async fn saved_file(browser: &Browser, name: &str) -> Vec<u8> {
    let path = browser.downloads.path().join(name);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(bytes) = std::fs::read(&path) {
            let partial = browser.downloads.path().join(format!("{name}.crdownload"));
            if !partial.exists() {
                return bytes;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was never saved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_photo_shows_first_as_its_preview_and_a_newcomer_gets_it_from_a_member_after_its_sender_left(
) {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let address = relay.address;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    // 5 MB.
    let photo = bmp(1280, 1365, 7);
    attach(&ada, &write(dir.path(), "holiday.bmp", &photo)).await;
    ada.send_message("The view from the top").await;

    bob.wait_for_message_count(1).await;
    assert_eq!(bob.messages().await[0].text, "The view from the top");
    let preview_drawn = bob
        .eval(
            "const canvas = document.querySelector('#messages li.attachment canvas.preview'); \
             const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data; \
             return pixels.some((value, index) => index % 4 === 3 && value > 0);",
        )
        .await;
    assert_eq!(
        preview_drawn, true,
        "the preview is drawn from the message alone"
    );
    wait_until_ready(&bob, "holiday.bmp").await;
    assert_eq!(
        shown_image_sha256(&bob, "holiday.bmp").await,
        sha256_hex(&photo)
    );
    assert_eq!(
        served_by(&bob, "holiday.bmp").await,
        [ada.fingerprint().await]
    );
    let bob_fingerprint = bob.fingerprint().await;
    ada.close().await;
    relay.stop().await;

    let relay = TestRelay::start_on(address, config(Admission::Open)).await;
    let cleo = open_online(&driver, &relay.url("/")).await;
    cleo.wait_for_message_count(1).await;
    wait_until_ready(&cleo, "holiday.bmp").await;
    assert_eq!(
        shown_image_sha256(&cleo, "holiday.bmp").await,
        sha256_hex(&photo)
    );
    assert_eq!(served_by(&cleo, "holiday.bmp").await, [bob_fingerprint]);
    assert!(
        cleo.dataset("chunksOverDataChannel")
            .await
            .parse::<u64>()
            .unwrap()
            >= 160
    );
    assert_eq!(cleo.dataset("chunksOverRelay").await, "0");
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_held_by_three_members_comes_to_a_fourth_from_more_than_one() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // 50 MB.
    let file = data_file(50 * 1024 * 1024, 3);
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let cleo = open_online(&driver, &relay.url("/")).await;
    attach(&ada, &write(dir.path(), "dataset.bin", &file)).await;
    ada.send_message("").await;
    for holder in [&bob, &cleo] {
        holder.wait_for_message_count(1).await;
        click_file_action(holder, "dataset.bin").await;
    }
    for holder in [&bob, &cleo] {
        wait_until_ready(holder, "dataset.bin").await;
    }
    let dan = open_online(&driver, &relay.url("/")).await;
    dan.wait_for_message_count(1).await;
    click_file_action(&dan, "dataset.bin").await;
    wait_until_ready(&dan, "dataset.bin").await;
    let servers = served_by(&dan, "dataset.bin").await;
    assert!(servers.len() > 1, "chunks from {servers:?}");
    click_file_action(&dan, "dataset.bin").await;
    assert!(
        saved_file(&dan, "dataset.bin").await == file,
        "the saved file is the original"
    );
    for browser in [ada, bob, cleo, dan] {
        browser.close().await;
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_data_channels_a_photo_travels_through_the_relay() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online_without_data_channels(&driver, &relay.url("/")).await;
    let bob = open_online_without_data_channels(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    // 500 KB.
    let photo = bmp(400, 416, 11);
    attach(&ada, &write(dir.path(), "small.bmp", &photo)).await;
    ada.send_message("through the relay").await;
    bob.wait_for_message_count(1).await;
    wait_until_ready(&bob, "small.bmp").await;
    assert_eq!(
        shown_image_sha256(&bob, "small.bmp").await,
        sha256_hex(&photo)
    );
    assert_eq!(bob.dataset("chunksOverRelay").await, "16");
    assert_eq!(bob.dataset("chunksOverDataChannel").await, "0");
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_interrupted_by_a_reload_resumes_from_the_chunks_kept() {
    if browser::run_sealed() {
        return;
    }
    // Through the relay, paced to its quota (256 KiB/s after a burst), the download takes
    // long enough to reload in the middle of it.
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online_without_data_channels(&driver, &relay.url("/")).await;
    let bob = open_online_without_data_channels(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = data_file(4 * 1024 * 1024, 5);
    attach(&ada, &write(dir.path(), "archive.tar", &file)).await;
    ada.send_message("").await;
    bob.wait_for_message_count(1).await;
    click_file_action(&bob, "archive.tar").await;
    bob.wait_until(
        "a third of the file",
        "const li = document.querySelector('#messages li.attachment'); \
         return Number(li.dataset.held) >= 43;",
    )
    .await;
    bob.reload().await;
    bob.wait_until_online().await;
    bob.wait_for_message_count(1).await;
    wait_until_ready(&bob, "archive.tar").await;
    click_file_action(&bob, "archive.tar").await;
    assert!(saved_file(&bob, "archive.tar").await == file);
    let forwarded: u64 = relay
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix("peerchat_peer_bytes_forwarded_total "))
        .unwrap()
        .parse()
        .unwrap();
    let once = (file.len() as u64) * 4 / 3;
    assert!(
        forwarded < once + once / 5,
        "{forwarded} bytes forwarded: the download started over"
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_attach_by_button_drop_and_paste_and_a_cancelled_one_is_left_out() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    let chosen = data_file(100_000, 1);
    attach(&ada, &write(dir.path(), "chosen.txt", &chosen)).await;
    ada.eval(
        "const dropped = new DataTransfer(); \
         dropped.items.add(new File(['dropped bytes'], 'dropped.txt', { type: 'text/plain' })); \
         const target = document.getElementById('conversation'); \
         target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dropped, bubbles: true, cancelable: true })); \
         target.dispatchEvent(new DragEvent('drop', { dataTransfer: dropped, bubbles: true, cancelable: true })); \
         const pasted = new DataTransfer(); \
         pasted.items.add(new File(['pasted bytes'], 'pasted.txt', { type: 'text/plain' })); \
         document.getElementById('message-text').dispatchEvent( \
           new ClipboardEvent('paste', { clipboardData: pasted, bubbles: true, cancelable: true })); \
         return true;",
    )
    .await;
    wait_until_uploads_ready(&ada, 3).await;
    let unwanted = data_file(200_000, 2);
    ada.choose_file(
        "#attach-input",
        &write(dir.path(), "unwanted.txt", &unwanted),
    )
    .await;
    ada.eval(
        "[...document.querySelectorAll('#uploads li')].find(li => \
         li.querySelector('.file-name').textContent === 'unwanted.txt') \
         .querySelector('button').click(); return true;",
    )
    .await;
    assert_eq!(
        ada.eval("return document.querySelectorAll('#uploads li').length")
            .await,
        3
    );
    ada.send_message("three files").await;
    bob.wait_for_message_count(1).await;
    let names = bob
        .eval(
            "return [...document.querySelectorAll('#messages .file-name')].map(n => n.textContent)",
        )
        .await;
    assert_eq!(
        names,
        serde_json::json!(["chosen.txt", "dropped.txt", "pasted.txt"])
    );
    // Small enough to be fetched at once, without a click (which would cancel it meanwhile).
    wait_until_ready(&bob, "chosen.txt").await;
    click_file_action(&bob, "chosen.txt").await;
    assert!(saved_file(&bob, "chosen.txt").await == chosen);
    assert_eq!(
        ada.eval("return document.querySelectorAll('#uploads li').length")
            .await,
        0,
        "the tray is empty once they are sent"
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

/// A member that serves every chunk asked of it with one bit flipped: it holds the real file's
/// key and proofs, so only the check of each chunk against the tree can catch it.
async fn play_tamperer(mut tamperer: TestClient, file: Vec<u8>) {
    let tree = ChunkTree::from_leaves(file.chunks(CHUNK_BYTES).map(leaf_hash).collect());
    let key = AttachmentKey {
        root: tree.root(),
        size: file.len() as u64,
    };
    let general = ChannelName::new("general").unwrap();
    let newcomer = loop {
        if let RelayToClient::Presence {
            change: PresenceChange::Joined,
            member,
            ..
        } = tamperer.next().await
        {
            break member.session;
        }
    };
    // Any frame makes the link the newcomer offered take the relay path.
    let hello = PeerToPeer::Have {
        channel: general,
        ids: vec![],
    };
    tamperer
        .send(&ClientToRelay::Peer {
            to: newcomer,
            frame: peerchat_shared::codec::encode(&hello),
        })
        .await;
    loop {
        let RelayToClient::Peer { from, frame } = tamperer.next().await else {
            continue;
        };
        let Ok(bytes) = from_base64url(&frame) else {
            continue;
        };
        let Ok(ChunkFrame::Want { chunks, .. }) = ChunkFrame::decode(&bytes) else {
            continue;
        };
        for index in chunks {
            let start = index as usize * CHUNK_BYTES;
            let mut data = file[start..(start + CHUNK_BYTES).min(file.len())].to_vec();
            data[0] ^= 1;
            let chunk = ChunkFrame::Chunk {
                key,
                index,
                proof: tree.proof(index as usize),
                data,
            };
            tamperer
                .send(&ClientToRelay::Peer {
                    to: from.session,
                    frame: to_base64url(&chunk.encode()),
                })
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_serving_tampered_chunks_is_dropped_and_the_photo_completes_from_another() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    // 2 MB: asked of both peers at once.
    let photo = bmp(800, 870, 9);
    attach(&bob, &write(dir.path(), "sunset.bmp", &photo)).await;
    bob.send_message("").await;
    bob.wait_for_message_count(1).await;
    let mut tamperer = relay.member(42).await;
    tamperer.join("general").await;
    let tamperer_task = tokio::spawn(play_tamperer(tamperer, photo.clone()));

    let cleo = open_online(&driver, &relay.url("/")).await;
    cleo.wait_for_message_count(1).await;
    cleo.wait_until(
        "Cleo to refuse the tamperer",
        "return document.getElementById('problem').textContent.includes('does not match the attachment')",
    )
    .await;
    wait_until_ready(&cleo, "sunset.bmp").await;
    assert_eq!(
        shown_image_sha256(&cleo, "sunset.bmp").await,
        sha256_hex(&photo)
    );
    assert_eq!(
        served_by(&cleo, "sunset.bmp").await,
        [bob.fingerprint().await]
    );
    tamperer_task.abort();
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_photo_spreads_to_members_who_never_opened_it_and_stays_after_its_sender_left() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    read_random(&bob).await;
    let dir = tempfile::tempdir().unwrap();
    // 1 MB: small enough to be fetched as soon as it is posted.
    let photo = bmp(600, 580, 13);
    attach(&ada, &write(dir.path(), "cake.bmp", &photo)).await;
    ada.send_message("").await;
    bob.wait_until(
        "Bob to hold the photo without opening it",
        "return Number(document.body.dataset.chunksOverDataChannel) === 32",
    )
    .await;
    let bob_fingerprint = bob.fingerprint().await;
    ada.close().await;

    let cleo = open_online(&driver, &relay.url("/")).await;
    cleo.wait_for_message_count(1).await;
    wait_until_ready(&cleo, "cake.bmp").await;
    assert_eq!(served_by(&cleo, "cake.bmp").await, [bob_fingerprint]);
    assert_eq!(
        shown_image_sha256(&cleo, "cake.bmp").await,
        sha256_hex(&photo)
    );
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}

/// Opens `browser`'s #random, so that #general's messages reach its store, not its screen.
async fn read_random(browser: &Browser) {
    browser
        .eval(
            "document.getElementById('join-name').value = 'random'; \
             document.getElementById('join-form').requestSubmit(); return true;",
        )
        .await;
    browser
        .wait_until(
            "the page to read #random",
            "return document.getElementById('channel-title').textContent.includes('random')",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_who_fetches_no_file_unopened_gets_a_photo_only_when_it_is_shown() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    bob.eval(
        "document.getElementById('open-settings').click(); \
         document.getElementById('storage-limit').value = '1024'; \
         document.getElementById('automatic-fetch').value = '0'; \
         document.getElementById('storage-form').requestSubmit(); return true;",
    )
    .await;
    bob.wait_until(
        "the setting to be saved",
        "return document.getElementById('storage-use').textContent.includes('of 1.0 GB')",
    )
    .await;
    bob.reload().await;
    bob.wait_until_online().await;
    bob.eval("document.getElementById('open-settings').click(); return true;")
        .await;
    bob.wait_until(
        "the setting to survive the reload",
        "return document.getElementById('automatic-fetch').value === '0'",
    )
    .await;
    bob.eval("document.getElementById('settings').close(); return true;")
        .await;
    let cleo = open_online(&driver, &relay.url("/")).await;
    read_random(&bob).await;
    read_random(&cleo).await;
    let dir = tempfile::tempdir().unwrap();
    // 1 MB: within the default size fetched as it is posted, which Cleo keeps.
    let photo = bmp(600, 580, 17);
    attach(&ada, &write(dir.path(), "kite.bmp", &photo)).await;
    ada.send_message("").await;
    cleo.wait_until(
        "Cleo to hold the photo without opening it",
        "return Number(document.body.dataset.chunksOverDataChannel) === 32",
    )
    .await;
    let cleo_fingerprint = cleo.fingerprint().await;
    ada.close().await;

    bob.eval(
        "document.getElementById('join-name').value = 'general'; \
         document.getElementById('join-form').requestSubmit(); return true;",
    )
    .await;
    wait_until_ready(&bob, "kite.bmp").await;
    assert_eq!(
        served_by(&bob, "kite.bmp").await,
        [cleo_fingerprint],
        "fetched when shown, after its sender left, not when posted"
    );
    bob.close().await;
    cleo.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_authors_files_are_fetched_unopened_only_within_that_authors_budget() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    // Files of the largest size fetched unopened (2 MiB): an author's budget is 16 of them
    // at once, 16 more over ten minutes.
    let files: Vec<PathBuf> = (0..20u8)
        .map(|n| {
            write(
                dir.path(),
                &format!("part-{n}.bin"),
                &data_file(2 * 1024 * 1024, n),
            )
        })
        .collect();
    for (batch, fetched) in [(&files[..10], 10), (&files[10..], 16)] {
        let paths: Vec<String> = batch
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        ada.client
            .find(fantoccini::Locator::Css("#attach-input"))
            .await
            .unwrap()
            .send_keys(&paths.join("\n"))
            .await
            .unwrap();
        wait_until_uploads_ready(&ada, 10).await;
        ada.send_message("").await;
        bob.wait_until(
            &format!("Bob to hold {fetched} files he never opened"),
            &format!(
                "return document.querySelectorAll('#messages li.attachment.file[data-state=\"ready\"]').length === {fetched}"
            ),
        )
        .await;
    }
    // The second message's files were each let through or not as it arrived, before any of
    // them was fetched.
    let states = file_states(&bob).await;
    let count = |wanted: &str| states.iter().filter(|state| *state == wanted).count();
    assert_eq!(
        [count("ready"), count("not_fetched")],
        [16, 4],
        "beyond the budget, files wait to be opened"
    );
    click_file_action(&bob, "part-19.bin").await;
    assert_eq!(
        saved_file(&bob, "part-19.bin").await,
        data_file(2 * 1024 * 1024, 19)
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

/// The states of the files in the log, in order.
async fn file_states(browser: &Browser) -> Vec<String> {
    let states = browser
        .eval("return [...document.querySelectorAll('#messages li.attachment.file')].map(li => li.dataset.state)")
        .await;
    serde_json::from_value(states).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_limit_refuses_a_file_too_large_and_drops_the_least_recently_opened_for_room() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    bob.eval(
        "document.getElementById('storage-limit').value = '16'; \
         document.getElementById('storage-form').requestSubmit(); return true;",
    )
    .await;
    bob.wait_until(
        "the 16 MB limit to be set",
        "return document.getElementById('storage-use').textContent.includes('of 16')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let too_large = data_file(17 * 1024 * 1024, 1);
    let (first, second) = (data_file(9_000_000, 2), data_file(9_000_000, 3));
    for (name, bytes) in [
        ("large.bin", &too_large),
        ("first.bin", &first),
        ("second.bin", &second),
    ] {
        attach(&ada, &write(dir.path(), name, bytes)).await;
        ada.send_message(name).await;
    }
    bob.wait_for_message_count(3).await;
    click_file_action(&bob, "large.bin").await;
    bob.wait_until(
        "the large file to be refused",
        "return document.querySelector('#messages li.attachment.file').dataset.state === 'no_room'",
    )
    .await;
    click_file_action(&bob, "first.bin").await;
    wait_until_ready(&bob, "first.bin").await;
    click_file_action(&bob, "second.bin").await;
    wait_until_ready(&bob, "second.bin").await;
    assert_eq!(file_states(&bob).await, ["no_room", "dropped", "ready"]);
    click_file_action(&bob, "second.bin").await;
    assert!(
        saved_file(&bob, "second.bin").await == second,
        "the file kept is whole"
    );
    // What You shows, drawn again: within the limit.
    bob.eval(
        "document.getElementById('storage-use').textContent = ''; \
         document.getElementById('storage-form').requestSubmit(); return true;",
    )
    .await;
    bob.wait_until(
        "the files kept to be within the limit",
        "const m = document.getElementById('storage-use').textContent \
         .match(/: ([0-9.]+) (bytes|KB|MB|GB) of 16/); \
         return m !== null && m[2] === 'MB' && Number(m[1]) <= 16;",
    )
    .await;
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_claiming_another_digest_for_a_file_spoils_only_itself() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = bmp(200, 200, 5);
    attach(&ada, &write(dir.path(), "real.bmp", &photo)).await;
    // Mallory describes Ada's bytes (the same root and size) with another SHA-256, first.
    let tree = ChunkTree::from_leaves(photo.chunks(CHUNK_BYTES).map(leaf_hash).collect());
    let mut sha256: [u8; 32] = Sha256::digest(&photo).into();
    sha256[0] ^= 1;
    let lie = Attachment {
        name: "lie.bin".into(),
        media_type: "application/octet-stream".into(),
        size: photo.len() as u64,
        sha256: Sha256Digest(sha256),
        root: Sha256Digest(tree.root()),
        image: None,
    };
    let mut mallory = relay.member(43).await;
    mallory.join("general").await;
    let draft = Draft::sign(
        &mallory.key,
        &mallory.relay,
        ChannelName::new("general").unwrap(),
        ClientNonce([1; 16]),
        MessageBody::with_attachments("", vec![lie]),
    );
    mallory.send(&ClientToRelay::Send { draft }).await;
    bob.wait_for_message_count(1).await;
    bob.wait_until(
        "the lie to be found out",
        "return document.querySelector('#messages li.attachment.file')?.dataset.state === 'mismatch'",
    )
    .await;
    ada.send_message("the real one").await;
    bob.wait_for_message_count(2).await;
    wait_until_ready(&bob, "real.bmp").await;
    assert_eq!(
        shown_image_sha256(&bob, "real.bmp").await,
        sha256_hex(&photo)
    );
    assert_eq!(
        file_states(&bob).await,
        ["mismatch"],
        "the lie stays found out"
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

/// One page posts a 5 MB photo (ready to send: hashed and stored); another, online in the
/// channel, shows its preview and then the image. Prints the milliseconds from pressing Enter
/// to each, for docs/benchmarks.md (never asserted; the photo test checks the order and the
/// bytes).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench attachments"]
#[allow(clippy::print_stdout, reason = "the times are this benchmark's report")]
async fn benchmark_a_photo_shown_first_as_its_preview_then_whole() {
    if browser::run_sealed() {
        return;
    }
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    // 1,300 × 1,290 pixels, 5.03 MB.
    let photo = bmp(1300, 1290, 21);
    attach(&ada, &write(dir.path(), "harbour.bmp", &photo)).await;
    // Both pages read the same clock; Bob's page notes when each appears.
    bob.eval(
        "window.shownAt = {}; \
         new MutationObserver(() => { \
           const tile = document.querySelector('#messages .image-tile'); \
           if (tile?.querySelector('canvas.preview')) shownAt.preview ??= Date.now(); \
           const img = tile?.querySelector('img'); \
           if (img && shownAt.image === undefined) img.decode().then(() => shownAt.image ??= Date.now()); \
         }).observe(document.getElementById('messages'), { subtree: true, childList: true }); \
         return true;",
    )
    .await;
    let sent_at = ada.eval("return Date.now()").await.as_f64().unwrap();
    ada.send_message("the harbour this morning").await;
    bob.wait_until(
        "the image to be shown",
        "return window.shownAt.image !== undefined",
    )
    .await;
    let shown = bob.eval("return window.shownAt").await;
    let since_sent = |name: &str| shown[name].as_f64().unwrap() - sent_at;
    println!(
        "photo: bytes={} preview_ms={:.0} image_ms={:.0}",
        photo.len(),
        since_sent("preview"),
        since_sent("image")
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

/// One page attaches a file of `PEERCHAT_ATTACHMENT_MEGABYTES` (100 unless set), another
/// downloads it over a data channel; prints the rate for docs/benchmarks.md (never asserted;
/// that such a file arrives whole is the three-holder test's).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench attachments"]
#[allow(clippy::print_stdout, reason = "the rate is this benchmark's report")]
async fn benchmark_a_browser_fetching_a_file_from_another() {
    if browser::run_sealed() {
        return;
    }
    let megabytes = support::benchmark_number("PEERCHAT_ATTACHMENT_MEGABYTES", 100);
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = open_online(&driver, &relay.url("/")).await;
    let bob = open_online(&driver, &relay.url("/")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = data_file(megabytes * 1024 * 1024, 4);
    attach(&ada, &write(dir.path(), "dataset.bin", &file)).await;
    ada.send_message("").await;
    bob.wait_for_message_count(1).await;
    let renderer_before = bob.renderer_memory_kib();
    click_file_action(&bob, "dataset.bin").await;
    let watch = bob.watch_until_ready("dataset.bin").await;
    let seconds = watch.elapsed.as_secs_f64();
    println!(
        "browser to browser: mebibytes={megabytes} transfer_ms={:.0} mib_per_s={:.1} receiving_renderer_before_kib={renderer_before} receiving_renderer_peak_kib={}",
        seconds * 1000.0,
        megabytes as f64 / seconds,
        watch.peak_renderer_kib
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}

/// The floor under the browser-to-browser figure: the same two kinds of profile, one bare
/// data channel between them (signalled by the test, no relay, no wasm, no IndexedDB),
/// `PEERCHAT_ATTACHMENT_MEGABYTES` sent as chunk-sized messages with as many bytes queued as
/// the page allows for chunks. Prints the rate for docs/benchmarks.md; never asserted.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: cargo xtask bench attachments"]
#[allow(clippy::print_stdout, reason = "the rate is this benchmark's report")]
async fn benchmark_a_bare_data_channel_between_two_browsers() {
    if browser::run_sealed() {
        return;
    }
    let megabytes = support::benchmark_number("PEERCHAT_ATTACHMENT_MEGABYTES", 100);
    let relay = TestRelay::start(config(Admission::Open)).await;
    let driver = ChromeDriver::start().await;
    let ada = Browser::open(&driver, &relay.url("/")).await;
    let bob = Browser::open(&driver, &relay.url("/")).await;
    // Both: a peer connection whose description is returned once its candidates are in it.
    let gathered = "window.bare = new RTCPeerConnection(); \
        window.described = () => new Promise((done) => { \
          const check = () => bare.iceGatheringState === 'complete' && done(bare.localDescription.sdp); \
          bare.onicegatheringstatechange = check; check(); });";
    let offer = ada
        .client
        .execute_async(
            &format!(
                "const done = arguments[0]; {gathered} \
                 window.channel = bare.createDataChannel('bare'); \
                 bare.setLocalDescription().then(described).then(done);"
            ),
            vec![],
        )
        .await
        .unwrap();
    let answer = bob
        .client
        .execute_async(
            &format!(
                "const [offer, done] = arguments; {gathered} \
                 window.received = 0; \
                 window.arrived = new Promise((whole) => {{ bare.ondatachannel = (event) => {{ \
                   event.channel.binaryType = 'arraybuffer'; \
                   event.channel.onmessage = (message) => {{ \
                     window.first ??= performance.now(); \
                     received += message.data.byteLength; \
                     if (received >= {total}) whole(performance.now() - first); }}; }}; }}); \
                 bare.setRemoteDescription({{ type: 'offer', sdp: offer }}) \
                   .then(() => bare.setLocalDescription()).then(described).then(done);",
                total = megabytes * 1024 * 1024
            ),
            vec![offer],
        )
        .await
        .unwrap();
    ada.client
        .execute_async(
            &format!(
                "const [answer, done] = arguments; \
                 channel.onopen = async () => {{ \
                   const message = new Uint8Array({message}); let sent = 0; \
                   channel.bufferedAmountLowThreshold = {queue} / 2; \
                   while (sent < {total}) {{ \
                     while (channel.bufferedAmount + message.length <= {queue} && sent < {total}) {{ \
                       channel.send(message); sent += message.length; }} \
                     if (sent < {total}) await new Promise((low) => channel.onbufferedamountlow = low); }} \
                   done(); }}; \
                 bare.setRemoteDescription({{ type: 'answer', sdp: answer }});",
                message = CHUNK_BYTES,
                queue = peerchat_shared::node::LINK_CHUNK_QUEUE_BYTES,
                total = megabytes * 1024 * 1024
            ),
            vec![answer],
        )
        .await
        .unwrap();
    let milliseconds = bob
        .client
        .execute_async("arrived.then(arguments[0])", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    println!(
        "bare data channel: mebibytes={megabytes} transfer_ms={milliseconds:.0} mib_per_s={:.1}",
        megabytes as f64 / (milliseconds / 1000.0)
    );
    ada.close().await;
    bob.close().await;
    relay.stop().await;
}
