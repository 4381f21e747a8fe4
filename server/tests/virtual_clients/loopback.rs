//! Virtual clients against a real relay on loopback, linked to each other by real WebRTC data
//! channels (the `webrtc` crate): admission as archive peers, history from one to another,
//! a cache that survives a restart with a data file, and ten started together.

use crate::{archive, support};

use archive::{virtual_client_template, wait_until_cached};
use peerchat_shared::frames::RelayToClient;
use peerchat_shared::membership::Role;
use peerchat_virtual::Fleet;
use std::path::Path;
use support::{unthrottled_config, wait_until, TestRelay};
use tokio_util::sync::CancellationToken;

/// A relay that admits the keys of `count` virtual clients kept in `key_dir`.
async fn relay_admitting(fleet: &Fleet, count: usize) -> TestRelay {
    let mut config = unthrottled_config();
    config.virtual_clients = fleet.public_keys(count).unwrap().into_iter().collect();
    TestRelay::start(config).await
}

fn fleet(dir: &Path, persistent: bool) -> Fleet {
    Fleet {
        key_dir: dir.join("keys"),
        data_dir: persistent.then(|| dir.join("data")),
    }
}

/// A member posts `count` messages to #general and leaves.
async fn post_and_leave(relay: &TestRelay, count: usize) {
    let [mut poster] = relay.members_in("general", [9]).await;
    poster.post_numbered("general", 0..count).await;
    poster.drain().await;
}

#[tokio::test]
async fn virtual_clients_log_in_as_archive_peers_and_pass_history_over_data_channels() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(dir.path(), false);
    let relay = relay_admitting(&fleet, 2).await;
    let shutdown = CancellationToken::new();
    let template = virtual_client_template(&relay, "127.0.0.1:0");
    let first =
        peerchat_virtual::start(fleet.config(&template, 1), shutdown.child_token()).unwrap();
    wait_until("the first to be online", || first.stats.is_online()).await;

    // Joining #general lists the virtual client with its role.
    let roles = relay_roles(&relay).await;
    assert!(roles.contains(&Role::Virtual), "roles listed: {roles:?}");

    post_and_leave(&relay, 30).await;
    wait_until_cached(&first, 30).await;

    // Only the first virtual client holds the history now; the second gets it from it.
    let second =
        peerchat_virtual::start(fleet.config(&template, 2), shutdown.child_token()).unwrap();
    wait_until_cached(&second, 30).await;
    assert!(second.stats.data_channels_open() >= 1);
    assert!(first.stats.envelopes_served() >= 30);
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("peerchat_virtual_clients_online 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("peerchat_peer_bytes_forwarded_total 0"),
        "history went over the data channel, not the relay: {metrics}"
    );
    shutdown.cancel();
    relay.stop().await;
}

/// The roles a fresh member sees listed in #general.
async fn relay_roles(relay: &TestRelay) -> Vec<Role> {
    let mut member = relay.member(4).await;
    member
        .send(&peerchat_shared::frames::ClientToRelay::Join {
            channel: peerchat_shared::channel::ChannelName::new("general").unwrap(),
        })
        .await;
    match member
        .next_matching(|frame| matches!(frame, RelayToClient::Joined { .. }))
        .await
    {
        RelayToClient::Joined { members, .. } => {
            members.into_iter().map(|member| member.role).collect()
        }
        _ => unreachable!("matched a joined frame"),
    }
}

#[tokio::test]
async fn a_virtual_client_with_a_data_file_keeps_its_cache_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(dir.path(), true);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let relay = relay_admitting(&fleet, 2).await;
    let template = virtual_client_template(&relay, "127.0.0.1:0");

    let shutdown = CancellationToken::new();
    let archive = peerchat_virtual::start(fleet.config(&template, 1), shutdown.clone()).unwrap();
    wait_until("online", || archive.stats.is_online()).await;
    post_and_leave(&relay, 20).await;
    wait_until_cached(&archive, 20).await;
    shutdown.cancel();
    archive.task.await.unwrap();

    let shutdown = CancellationToken::new();
    let restarted =
        peerchat_virtual::start(fleet.config(&template, 1), shutdown.child_token()).unwrap();
    wait_until_cached(&restarted, 20).await;
    // And it serves what it kept: the only holder of that history.
    let newcomer =
        peerchat_virtual::start(fleet.config(&template, 2), shutdown.child_token()).unwrap();
    wait_until_cached(&newcomer, 20).await;
    shutdown.cancel();
    relay.stop().await;
}

#[tokio::test]
async fn ten_virtual_clients_started_together_all_get_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let seed_fleet = fleet(&dir.path().join("seed"), false);
    let ten = fleet(&dir.path().join("ten"), false);
    let mut config = unthrottled_config();
    config.virtual_clients = seed_fleet
        .public_keys(1)
        .unwrap()
        .into_iter()
        .chain(ten.public_keys(10).unwrap())
        .collect();
    let relay = TestRelay::start(config).await;
    let template = virtual_client_template(&relay, "127.0.0.1:0");
    let shutdown = CancellationToken::new();
    let seed = seed_fleet.start(&template, 1, &shutdown).unwrap();
    wait_until("the seed to be online", || seed[0].stats.is_online()).await;
    post_and_leave(&relay, 40).await;
    wait_until_cached(&seed[0], 40).await;

    let clients = ten.start(&template, 10, &shutdown).unwrap();
    for client in &clients {
        wait_until_cached(client, 40).await;
    }
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("peerchat_virtual_clients_online 11"),
        "{metrics}"
    );
    shutdown.cancel();
    relay.stop().await;
}
