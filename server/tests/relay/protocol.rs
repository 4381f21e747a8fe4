//! The relay over real WebSockets on loopback: login, admission, channels, presence, signed
//! relay with resend idempotency, signalling, and every kind of bad input.

use crate::support;

use peerchat_server::{invites, Admission};
use peerchat_shared::channel::ChannelName;
use peerchat_shared::frames::{ClientToRelay, ErrorCode, PresenceChange, RelayToClient, SessionId};
use peerchat_shared::identity::{SecretKey, Signature};
use peerchat_shared::limits::MAX_CLIENT_FRAME_BYTES;
use peerchat_shared::membership::{MembershipCertificate, Role};
use peerchat_shared::message::Envelope;
use peerchat_shared::time::UnixMillis;
use std::time::Duration;
use support::{config, Credentials, TestClient, TestRelay};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Guards a wait on the relay; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(20);

fn envelope_of(frame: RelayToClient) -> Envelope {
    match frame {
        RelayToClient::Message { envelope } | RelayToClient::Ack { envelope } => envelope,
        other => panic!("expected a message or ack, got {other:?}"),
    }
}

#[tokio::test]
async fn members_exchange_messages_signed_by_author_and_relay() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    let relay_verifier = relay.key.public_key().verifier().unwrap();
    let [mut alice, mut bob] = relay.members_in("general", [10, 11]).await;

    let mut acked = Vec::new();
    for (nonce, text) in [(1, "first"), (2, "second"), (3, "third")] {
        alice
            .send(&ClientToRelay::Send {
                draft: alice.draft("general", nonce, text),
            })
            .await;
        let ack = envelope_of(
            alice
                .next_matching(|frame| matches!(frame, RelayToClient::Ack { .. }))
                .await,
        );
        acked.push(ack);
    }
    for sent in &acked {
        let received = envelope_of(
            bob.next_matching(|frame| matches!(frame, RelayToClient::Message { .. }))
                .await,
        );
        assert_eq!(&received, sent);
        let verified = received
            .verify(&relay_verifier)
            .expect("both signatures verify");
        assert_eq!(verified.envelope().author, alice.key.public_key());
    }
    assert!(
        acked.windows(2).all(|pair| pair[0].id < pair[1].id),
        "ids sort in send order"
    );

    // A resend with the same nonce (say after a reconnect) gets the same envelope, no duplicate.
    alice
        .send(&ClientToRelay::Send {
            draft: alice.draft("general", 2, "second"),
        })
        .await;
    let again = envelope_of(
        alice
            .next_matching(|frame| matches!(frame, RelayToClient::Ack { .. }))
            .await,
    );
    assert_eq!(again, acked[1]);
    // Another draft under a nonce in use is refused: another text, or the same in another channel.
    alice.join("random").await;
    for (channel, text) in [("general", "2nd"), ("random", "second")] {
        alice
            .send(&ClientToRelay::Send {
                draft: alice.draft(channel, 2, text),
            })
            .await;
        assert_eq!(alice.expect_error().await, ErrorCode::NonceReused);
    }
    assert!(bob
        .drain()
        .await
        .iter()
        .all(|frame| !matches!(frame, RelayToClient::Message { .. })));

    // And the other way: bob answers, alice verifies it.
    bob.send(&ClientToRelay::Send {
        draft: bob.draft("general", 1, "hi alice"),
    })
    .await;
    let reply = envelope_of(
        alice
            .next_matching(|frame| matches!(frame, RelayToClient::Message { .. }))
            .await,
    );
    let reply = reply
        .verify(&relay_verifier)
        .expect("both signatures verify");
    assert_eq!(reply.envelope().author, bob.key.public_key());
    assert!(reply.envelope().id > acked[2].id);
    relay.stop().await;
}

#[tokio::test]
async fn welcome_hands_out_the_configured_ice_servers_and_channels() {
    use peerchat_shared::frames::IceServer;
    let mut relay_config = config(Admission::Open);
    let stun = IceServer {
        urls: vec!["stun:stun.example.org:3478".into()],
        username: None,
        credential: None,
    };
    relay_config.ice_servers = vec![stun.clone()];
    relay_config
        .default_channels
        .push(ChannelName::new("random").unwrap());
    let relay = TestRelay::start(relay_config).await;
    let (mut socket, relay_key, nonce) = TestClient::connect(&relay).await;
    let key = SecretKey::from_seed([170; 32]);
    support::send_frame(
        &mut socket,
        &TestClient::login_frame(&key, &relay_key, &nonce, Credentials::None),
    )
    .await;
    match support::next_frame(&mut socket).await {
        RelayToClient::Welcome {
            ice_servers,
            channels,
            role,
            certificate,
            ..
        } => {
            assert_eq!(ice_servers, vec![stun]);
            let names: Vec<&str> = channels
                .iter()
                .map(|channel| channel.name.as_str())
                .collect();
            assert_eq!(names, ["general", "random"]);
            assert_eq!(role, Role::Member);
            let now = UnixMillis(
                u64::try_from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis(),
                )
                .unwrap(),
            );
            certificate
                .verify(&relay_key.verifier().unwrap(), &key.public_key(), now)
                .expect("the welcome's certificate is valid for this key");
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn presence_shows_who_joins_leaves_and_disconnects() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    let mut alice = relay.member(20).await;
    alice.join("general").await;
    let mut bob = relay.member(21).await;
    bob.send(&ClientToRelay::Join {
        channel: ChannelName::new("general").unwrap(),
    })
    .await;
    match bob
        .next_matching(|frame| matches!(frame, RelayToClient::Joined { .. }))
        .await
    {
        RelayToClient::Joined { members, .. } => {
            let keys: Vec<_> = members.iter().map(|member| member.key).collect();
            assert!(keys.contains(&alice.key.public_key()) && keys.contains(&bob.key.public_key()));
        }
        _ => unreachable!(),
    }
    let joined = alice
        .next_matching(|frame| matches!(frame, RelayToClient::Presence { .. }))
        .await;
    assert!(
        matches!(joined, RelayToClient::Presence { change: PresenceChange::Joined, member, .. } if member.session == bob.session)
    );

    // A second tab of the same member is a separate session.
    let mut bob_tab = relay.member(21).await;
    assert_ne!(bob_tab.session, bob.session);
    bob_tab.join("general").await;
    drop(bob_tab);
    let left = alice.next_matching(support::is_presence_left).await;
    assert!(
        matches!(left, RelayToClient::Presence { member, .. } if member.session != bob.session)
    );

    alice.send(&ClientToRelay::ListChannels).await;
    match alice
        .next_matching(|frame| matches!(frame, RelayToClient::Channels { .. }))
        .await
    {
        RelayToClient::Channels { channels } => {
            assert_eq!(channels.len(), 1);
            assert_eq!(
                (channels[0].name.as_str(), channels[0].online),
                ("general", 2)
            );
        }
        _ => unreachable!(),
    }
    relay.stop().await;
}

#[tokio::test]
async fn the_channel_list_marks_the_defaults_and_ranks_the_rest_by_distinct_members() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    // One member's three sessions in a channel named to sort first...
    let mut flood = Vec::new();
    for _ in 0..3 {
        let mut session = relay.member(50).await;
        session.join("0flood").await;
        flood.push(session);
    }
    // ...count for less than two members.
    let mut pair = Vec::new();
    for seed in [51, 52] {
        let mut member = relay.member(seed).await;
        member.join("zeal").await;
        pair.push(member);
    }
    let mut newcomer = relay.member(53).await;
    newcomer.send(&ClientToRelay::ListChannels).await;
    let RelayToClient::Channels { channels } = newcomer
        .next_matching(|frame| matches!(frame, RelayToClient::Channels { .. }))
        .await
    else {
        unreachable!()
    };
    let listed: Vec<(&str, u32, bool)> = channels
        .iter()
        .map(|summary| (summary.name.as_str(), summary.online, summary.default))
        .collect();
    assert_eq!(
        listed,
        [
            ("general", 0, true),
            ("zeal", 2, false),
            ("0flood", 3, false)
        ]
    );
    relay.stop().await;
}

#[tokio::test]
async fn invite_only_relay_admits_invited_and_certified_keys_only() {
    let mut relay_config = config(Admission::InviteOnly);
    let banned = SecretKey::from_seed([39; 32]).public_key();
    relay_config.banned.insert(banned);
    let relay = TestRelay::start(relay_config).await;

    let (_, refused) = TestClient::login(&relay, 30, Credentials::None).await;
    assert_eq!(refused, Err(ErrorCode::NotAdmitted));

    let invite = invites::mint(&relay.key, Role::Member, 1, Duration::from_secs(3600));
    let (first, accepted) =
        TestClient::login(&relay, 31, Credentials::Invite(invite.clone())).await;
    assert_eq!(accepted, Ok(()));
    let (_, used_up) = TestClient::login(&relay, 32, Credentials::Invite(invite)).await;
    assert_eq!(used_up, Err(ErrorCode::InviteUsedUp));

    // The certificate from the welcome admits the member again, without an invite.
    let certificate = first.certificate.clone().unwrap();
    let (_, again) =
        TestClient::login(&relay, 31, Credentials::Certificate(certificate.clone())).await;
    assert_eq!(again, Ok(()));

    let promoted = MembershipCertificate {
        role: Role::Owner,
        ..certificate.clone()
    };
    let (_, altered) = TestClient::login(&relay, 31, Credentials::Certificate(promoted)).await;
    assert_eq!(altered, Err(ErrorCode::InvalidCredential));
    let (_, stolen) = TestClient::login(&relay, 33, Credentials::Certificate(certificate)).await;
    assert_eq!(stolen, Err(ErrorCode::InvalidCredential));
    let forger = SecretKey::from_seed([99; 32]);
    let forged = MembershipCertificate::issue(
        &forger,
        SecretKey::from_seed([34; 32]).public_key(),
        Role::Member,
        UnixMillis(0),
        UnixMillis(u64::MAX >> 16),
    );
    let (_, forged_refused) = TestClient::login(&relay, 34, Credentials::Certificate(forged)).await;
    assert_eq!(forged_refused, Err(ErrorCode::InvalidCredential));

    let expired = peerchat_shared::membership::InviteToken::mint(
        &relay.key,
        [5; 16],
        Role::Member,
        9,
        UnixMillis(1),
    );
    let (_, expired_refused) = TestClient::login(&relay, 35, Credentials::Invite(expired)).await;
    assert_eq!(expired_refused, Err(ErrorCode::InvalidCredential));

    let ban_invite = invites::mint(&relay.key, Role::Member, 5, Duration::from_secs(3600));
    let (_, banned_refused) = TestClient::login(&relay, 39, Credentials::Invite(ban_invite)).await;
    assert_eq!(banned_refused, Err(ErrorCode::Banned));
    relay.stop().await;
}

#[tokio::test]
async fn owners_mint_invites_and_members_cannot() {
    let mut relay_config = config(Admission::InviteOnly);
    relay_config
        .owners
        .insert(SecretKey::from_seed([40; 32]).public_key());
    let relay = TestRelay::start(relay_config).await;
    let (mut owner, welcome) = TestClient::login(&relay, 40, Credentials::None).await;
    assert_eq!((welcome, owner.role), (Ok(()), Some(Role::Owner)));
    owner
        .send(&ClientToRelay::MintInvite {
            role: Role::Member,
            max_uses: 2,
            ttl_seconds: 600,
        })
        .await;
    let RelayToClient::Invite { token } = owner
        .next_matching(|frame| matches!(frame, RelayToClient::Invite { .. }))
        .await
    else {
        unreachable!()
    };
    let (mut member, accepted) = TestClient::login(&relay, 41, Credentials::Invite(token)).await;
    assert_eq!((accepted, member.role), (Ok(()), Some(Role::Member)));
    member
        .send(&ClientToRelay::MintInvite {
            role: Role::Owner,
            max_uses: 1,
            ttl_seconds: 600,
        })
        .await;
    assert_eq!(member.expect_error().await, ErrorCode::Forbidden);
    relay.stop().await;
}

#[tokio::test]
async fn joined_lists_the_joiner_and_mint_invite_clamps_what_it_does_not_refuse() {
    let owner_key = SecretKey::from_seed([44; 32]).public_key();
    let mut relay_config = config(Admission::Open);
    relay_config.owners.insert(owner_key);
    let relay = TestRelay::start(relay_config).await;
    let mut owner = relay.member(44).await;
    let members = owner.join("general").await;
    assert!(members.iter().any(|member| member.session == owner.session));

    owner
        .send(&ClientToRelay::MintInvite {
            role: Role::Member,
            max_uses: 0,
            ttl_seconds: 200 * 24 * 3600,
        })
        .await;
    let RelayToClient::Invite { token } = owner
        .next_matching(|frame| matches!(frame, RelayToClient::Invite { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(token.max_uses, 1);
    let ninety_days = 90 * 24 * 3600 * 1000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        token.expires_at.0 <= now + ninety_days,
        "{:?}",
        token.expires_at
    );
    assert!(token.expires_at.0 > now + ninety_days - 60_000);
    relay.stop().await;
}

#[tokio::test]
async fn a_key_taken_out_of_the_owners_is_a_member_at_its_next_login() {
    let owner_key = SecretKey::from_seed([42; 32]).public_key();
    let mut with_owner = config(Admission::InviteOnly);
    with_owner.owners.insert(owner_key);
    let relay = TestRelay::start(with_owner).await;
    let (owner, welcome) = TestClient::login(&relay, 42, Credentials::None).await;
    assert_eq!((welcome, owner.role), (Ok(()), Some(Role::Owner)));
    let certificate = owner.certificate.clone().unwrap();
    assert_eq!(
        certificate.role,
        Role::Member,
        "a configured role is not written down"
    );
    // An owner invite, by contrast, grants a role the certificate carries.
    let invite = invites::mint(&relay.key, Role::Owner, 1, Duration::from_secs(600));
    let (invited, _) = TestClient::login(&relay, 43, Credentials::Invite(invite)).await;
    let invited_certificate = invited.certificate.clone().unwrap();
    assert_eq!(invited_certificate.role, Role::Owner);
    drop((owner, invited));
    relay.stop().await;

    // The operator restarts the relay without --owners.
    let relay = TestRelay::start(config(Admission::InviteOnly)).await;
    let (demoted, welcome) =
        TestClient::login(&relay, 42, Credentials::Certificate(certificate)).await;
    assert_eq!((welcome, demoted.role), (Ok(()), Some(Role::Member)));
    let (still_owner, welcome) =
        TestClient::login(&relay, 43, Credentials::Certificate(invited_certificate)).await;
    assert_eq!((welcome, still_owner.role), (Ok(()), Some(Role::Owner)));
    relay.stop().await;
}

#[tokio::test]
async fn bad_frames_get_clear_errors_and_the_relay_keeps_serving() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    let [mut mallory, mut alice] = relay.members_in("general", [50, 51]).await;

    mallory.send_text("{not json".into()).await;
    assert_eq!(mallory.expect_error().await, ErrorCode::MalformedFrame);
    mallory.send_text(r#"{"type":"teleport"}"#.into()).await;
    assert_eq!(mallory.expect_error().await, ErrorCode::UnknownType);
    mallory
        .send_text(r#"{"type":"join","channel":"No Spaces"}"#.into())
        .await;
    assert_eq!(mallory.expect_error().await, ErrorCode::InvalidField);
    mallory
        .send_text(format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "x".repeat(MAX_CLIENT_FRAME_BYTES)
        ))
        .await;
    assert_eq!(mallory.expect_error().await, ErrorCode::FrameTooLarge);

    // A draft signed by someone else, or altered after signing, is refused with its nonce.
    let mut forged = mallory.draft("general", 7, "I am alice");
    forged.signature = alice.draft("general", 7, "I am alice").signature;
    mallory.send(&ClientToRelay::Send { draft: forged }).await;
    match mallory
        .next_matching(|frame| matches!(frame, RelayToClient::Error { .. }))
        .await
    {
        RelayToClient::Error { code, nonce, .. } => assert_eq!(
            (code, nonce.map(|nonce| nonce.0)),
            (ErrorCode::BadSignature, Some([7; 16]))
        ),
        _ => unreachable!(),
    }
    let mut tampered = mallory.draft("general", 8, "hello");
    tampered.body = peerchat_shared::message::MessageBody::text("goodbye");
    mallory.send(&ClientToRelay::Send { draft: tampered }).await;
    assert_eq!(mallory.expect_error().await, ErrorCode::BadSignature);
    mallory
        .send(&ClientToRelay::Send {
            draft: mallory.draft("random", 9, "not joined"),
        })
        .await;
    assert_eq!(mallory.expect_error().await, ErrorCode::NotInChannel);
    mallory
        .send(&ClientToRelay::Login(Box::new(
            peerchat_shared::frames::Login {
                protocol: 1,
                key: mallory.key.public_key(),
                signature: Signature([0; 64]),
                certificate: None,
                invite: None,
                profile: None,
            },
        )))
        .await;
    assert_eq!(mallory.expect_error().await, ErrorCode::AlreadyLoggedIn);

    // Nothing of that reached alice, and the relay still serves her.
    assert!(alice
        .drain()
        .await
        .iter()
        .all(|frame| !matches!(frame, RelayToClient::Message { .. })));
    alice
        .send(&ClientToRelay::Send {
            draft: alice.draft("general", 1, "still here"),
        })
        .await;
    envelope_of(
        alice
            .next_matching(|frame| matches!(frame, RelayToClient::Ack { .. }))
            .await,
    );
    relay.stop().await;
}

#[tokio::test(start_paused = true)]
async fn login_is_refused_for_replayed_expired_forged_or_premature_frames() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.challenge_ttl = Duration::from_millis(300);
    let relay = TestRelay::start(relay_config).await;
    let key = SecretKey::from_seed([60; 32]);

    // A login answer recorded on one connection does not work on another (fresh nonce each time).
    let (mut first, relay_key, nonce) = TestClient::connect(&relay).await;
    let recorded = TestClient::login_frame(&key, &relay_key, &nonce, Credentials::None);
    support::send_frame(&mut first, &recorded).await;
    assert!(matches!(
        support::next_frame(&mut first).await,
        RelayToClient::Welcome { .. }
    ));
    let (mut second, _, _) = TestClient::connect(&relay).await;
    support::send_frame(&mut second, &recorded).await;
    assert!(matches!(
        support::next_frame(&mut second).await,
        RelayToClient::Error {
            code: ErrorCode::LoginFailed,
            ..
        }
    ));

    // Too late: the challenge expired.
    let (mut late, relay_key, nonce) = TestClient::connect(&relay).await;
    tokio::time::advance(Duration::from_millis(301)).await;
    support::send_frame(
        &mut late,
        &TestClient::login_frame(&key, &relay_key, &nonce, Credentials::None),
    )
    .await;
    assert!(matches!(
        support::next_frame(&mut late).await,
        RelayToClient::Error {
            code: ErrorCode::ChallengeExpired,
            ..
        }
    ));

    // Signed by another key than the one claimed.
    let (mut forged, relay_key, nonce) = TestClient::connect(&relay).await;
    let mut frame = TestClient::login_frame(
        &SecretKey::from_seed([61; 32]),
        &relay_key,
        &nonce,
        Credentials::None,
    );
    if let ClientToRelay::Login(login) = &mut frame {
        login.key = key.public_key();
    }
    support::send_frame(&mut forged, &frame).await;
    assert!(matches!(
        support::next_frame(&mut forged).await,
        RelayToClient::Error {
            code: ErrorCode::LoginFailed,
            ..
        }
    ));

    // Anything but login first.
    let (mut premature, _, _) = TestClient::connect(&relay).await;
    support::send_frame(
        &mut premature,
        &ClientToRelay::Join {
            channel: ChannelName::new("general").unwrap(),
        },
    )
    .await;
    assert!(matches!(
        support::next_frame(&mut premature).await,
        RelayToClient::Error {
            code: ErrorCode::NotLoggedIn,
            ..
        }
    ));
    relay.stop().await;
}

#[tokio::test]
async fn signalling_from_is_set_by_the_relay_and_unknown_targets_are_refused() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    let [mut alice, mut bob] = relay.members_in("general", [70, 71]).await;
    // Mallory-style spoofing: an extra "from" field naming bob is ignored.
    let spoofed = format!(
        r#"{{"type":"signal","to":{},"data":"offer","from":{{"key":"{}","session":{}}}}}"#,
        bob.session.0,
        bob.key.public_key(),
        bob.session.0
    );
    alice.send_text(spoofed).await;
    match bob
        .next_matching(|frame| matches!(frame, RelayToClient::Signal { .. }))
        .await
    {
        RelayToClient::Signal { from, data } => {
            assert_eq!(
                (from.key, from.session, data.as_str()),
                (alice.key.public_key(), alice.session, "offer")
            );
        }
        _ => unreachable!(),
    }
    alice
        .send(&ClientToRelay::Signal {
            to: SessionId(999_999),
            data: "offer".into(),
        })
        .await;
    assert_eq!(alice.expect_error().await, ErrorCode::UnknownPeer);
    alice
        .send(&ClientToRelay::Signal {
            to: bob.session,
            data: "x".repeat(peerchat_shared::limits::MAX_SIGNAL_BYTES + 1),
        })
        .await;
    assert_eq!(alice.expect_error().await, ErrorCode::InvalidField);

    // A session in none of bob's channels cannot reach him, however it learnt his session id.
    let mut stranger = relay.member(76).await;
    stranger.join("elsewhere").await;
    for frame in [
        ClientToRelay::Signal {
            to: bob.session,
            data: "offer".into(),
        },
        ClientToRelay::Peer {
            to: bob.session,
            frame: r#"{"type":"want","channel":"general","ids":[]}"#.into(),
        },
    ] {
        stranger.send(&frame).await;
        assert_eq!(stranger.expect_error().await, ErrorCode::UnknownPeer);
    }
    assert!(bob.drain().await.iter().all(|frame| !matches!(
        frame,
        RelayToClient::Signal { .. } | RelayToClient::Peer { .. }
    )));
    relay.stop().await;
}

#[tokio::test]
async fn frames_forwarded_to_a_member_who_does_not_read_are_turned_away_not_queued() {
    let mut relay_config = support::unthrottled_config();
    relay_config.limits.peer_burst_bytes = 1e12;
    relay_config.limits.peer_bytes_per_second = 1e12;
    let relay = TestRelay::start(relay_config).await;
    let [mut sender, mut reader] = relay.members_in("general", [77, 78]).await;
    let padding = "x".repeat(60_000);
    let frame = format!(r#"{{"type":"want","channel":"general","ids":[],"pad":"{padding}"}}"#);
    // The reader reads nothing; its socket buffers fill, then its queue up to the forwarded
    // bytes limit, and then the sender is told to slow down.
    let mut sent = 0;
    let refusal = loop {
        assert!(sent < 2_000, "never turned away");
        for _ in 0..10 {
            sender
                .send(&ClientToRelay::Peer {
                    to: reader.session,
                    frame: frame.clone(),
                })
                .await;
        }
        sent += 10;
        let refused = sender
            .drain()
            .await
            .into_iter()
            .find_map(|frame| match frame {
                RelayToClient::Error { code, message, .. } => Some((code, message)),
                _ => None,
            });
        if let Some(refusal) = refused {
            break refusal;
        }
    };
    assert_eq!(refusal.0, ErrorCode::RateLimited);
    assert!(refusal.1.contains("more than it reads"), "{}", refusal.1);
    // The reader was not dropped as a slow consumer: it gets everything queued, then a pong.
    let received = reader.drain().await;
    assert!(received.len() > 10, "{}", received.len());
    assert!(received
        .iter()
        .all(|frame| !matches!(frame, RelayToClient::Error { .. })));
    relay
        .wait_for_metric("peerchat_queue_overflows_total 0")
        .await;
    relay.stop().await;
}

#[tokio::test]
async fn peer_frames_are_forwarded_with_the_senders_address_and_counted_not_kept() {
    let relay = TestRelay::start(config(Admission::Open)).await;
    let [mut alice, mut bob] = relay.members_in("general", [72, 73]).await;
    let frame = r#"{"type":"want","channel":"general","ids":[]}"#;
    alice
        .send(&ClientToRelay::Peer {
            to: bob.session,
            frame: frame.into(),
        })
        .await;
    match bob
        .next_matching(|frame| matches!(frame, RelayToClient::Peer { .. }))
        .await
    {
        RelayToClient::Peer { from, frame: got } => {
            assert_eq!(
                (from.key, from.session, got.as_str()),
                (alice.key.public_key(), alice.session, frame)
            );
        }
        _ => unreachable!(),
    }
    let forwarded = format!("peerchat_peer_bytes_forwarded_total {}", frame.len());
    assert!(relay.metrics().await.contains(&forwarded));
    alice
        .send(&ClientToRelay::Peer {
            to: SessionId(999_999),
            frame: frame.into(),
        })
        .await;
    assert_eq!(alice.expect_error().await, ErrorCode::UnknownPeer);
    relay.stop().await;
}

#[tokio::test]
async fn peer_frames_beyond_the_byte_quota_are_refused_while_other_frames_still_pass() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.peer_burst_bytes = 10_000.0;
    relay_config.limits.peer_bytes_per_second = 1.0;
    let relay = TestRelay::start(relay_config).await;
    let [mut alice, bob] = relay.members_in("general", [74, 75]).await;
    let big = format!(
        r#"{{"type":"want","channel":"general","ids":[],"pad":"{}"}}"#,
        "x".repeat(6_000)
    );
    alice
        .send(&ClientToRelay::Peer {
            to: bob.session,
            frame: big.clone(),
        })
        .await;
    alice
        .send(&ClientToRelay::Peer {
            to: bob.session,
            frame: big,
        })
        .await;
    match alice
        .next_matching(|frame| matches!(frame, RelayToClient::Error { .. }))
        .await
    {
        RelayToClient::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::RateLimited);
            assert!(message.contains("quota"), "{message}");
        }
        _ => unreachable!(),
    }
    alice.send(&ClientToRelay::Ping).await;
    alice
        .next_matching(|frame| matches!(frame, RelayToClient::Pong))
        .await;
    relay.stop().await;
}

#[tokio::test]
async fn flooding_beyond_the_rate_limit_is_refused_then_disconnected() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.frame_burst = 5.0;
    relay_config.limits.frames_per_second = 0.001;
    relay_config.limits.max_rate_limit_strikes = 3;
    let relay = TestRelay::start(relay_config).await;
    let mut flooder = relay.member(80).await;
    for _ in 0..5 {
        flooder.send(&ClientToRelay::Ping).await;
        assert_eq!(flooder.next().await, RelayToClient::Pong);
    }
    for _ in 0..4 {
        flooder.send(&ClientToRelay::Ping).await;
        assert_eq!(flooder.expect_error().await, ErrorCode::RateLimited);
    }
    // The relay closed the connection; others still get in.
    use futures_util::StreamExt as _;
    let closed = loop {
        match flooder.socket.next().await {
            None | Some(Err(_)) => break true,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => break true,
            Some(Ok(_)) => continue,
        }
    };
    assert!(closed);
    relay.member(81).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_without_holding_up_the_channel() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.send_queue_frames = 4;
    relay_config.limits.messages_per_second = 1e6;
    relay_config.limits.message_burst = 1e6;
    relay_config.limits.frames_per_second = 1e6;
    relay_config.limits.frame_burst = 1e6;
    let relay = TestRelay::start(relay_config).await;
    let [mut sender, slow] = relay.members_in("general", [100, 101]).await;
    let slow_session = slow.session;

    // The slow member never reads; the sender keeps posting until the relay drops the reader.
    let text = "x".repeat(peerchat_shared::limits::MAX_TEXT_BYTES);
    let mut nonce = 0u64;
    let dropped = loop {
        nonce += 1;
        assert!(nonce < 5_000, "the slow reader was never disconnected");
        let mut draft = sender.draft("general", 0, &text);
        draft.nonce = peerchat_shared::message::ClientNonce(u128::from(nonce).to_be_bytes());
        let draft = peerchat_shared::message::Draft::sign(
            &sender.key,
            &sender.relay,
            draft.channel,
            draft.nonce,
            draft.body,
        );
        sender.send(&ClientToRelay::Send { draft }).await;
        let frame = sender
            .next_matching(|frame| {
                matches!(frame, RelayToClient::Ack { .. }) || support::is_presence_left(frame)
            })
            .await;
        if let RelayToClient::Presence { member, .. } = frame {
            break member.session;
        }
    };
    assert_eq!(dropped, slow_session);
    let metrics = relay.metrics().await;
    // One dropped session counts once, however many frames it missed meanwhile.
    assert!(
        metrics
            .lines()
            .any(|line| line == "peerchat_queue_overflows_total 1"),
        "{metrics}"
    );
    sender
        .send(&ClientToRelay::Send {
            draft: sender.draft("general", 1, "still flowing"),
        })
        .await;
    envelope_of(
        sender
            .next_matching(|frame| matches!(frame, RelayToClient::Ack { .. }))
            .await,
    );
    // Reading at last, the dropped member learns why before the connection closes.
    let mut slow = slow;
    assert_eq!(slow.expect_error().await, ErrorCode::SlowConsumer);
    drop(slow);
    relay.wait_for_metric("peerchat_sessions 1").await;
    relay.stop().await;
}

#[tokio::test]
async fn a_pong_comes_after_every_frame_queued_before_its_ping() {
    let relay = TestRelay::start(support::unthrottled_config()).await;
    let [mut poster, mut reader] = relay.members_in("general", [102, 103]).await;
    // Enough large messages that the reader's socket buffers fill while it does not read, so
    // some are still queued at the relay when its ping arrives.
    let posts: u8 = 200;
    let text = "x".repeat(peerchat_shared::limits::MAX_TEXT_BYTES);
    for nonce in 0..posts {
        let draft = peerchat_shared::message::Draft::sign(
            &poster.key,
            &poster.relay,
            ChannelName::new("general").unwrap(),
            peerchat_shared::message::ClientNonce(u128::from(nonce).to_be_bytes()),
            peerchat_shared::message::MessageBody::text(text.clone()),
        );
        poster.send(&ClientToRelay::Send { draft }).await;
    }
    let acks = poster
        .drain()
        .await
        .iter()
        .filter(|frame| matches!(frame, RelayToClient::Ack { .. }))
        .count();
    assert_eq!(acks, usize::from(posts));

    let before_pong = reader.drain().await;
    let messages = before_pong
        .iter()
        .filter(|frame| matches!(frame, RelayToClient::Message { .. }))
        .count();
    assert_eq!(messages, usize::from(posts));
    relay.stop().await;
}

#[tokio::test]
async fn profiles_give_members_display_names_and_renames_reach_the_channel() {
    use peerchat_shared::membership::{DisplayName, Profile};
    let relay = TestRelay::start(config(Admission::Open)).await;
    let relay_key = relay.key.public_key();
    let ada = SecretKey::from_seed([110; 32]);
    let profile = Profile::sign(
        &ada,
        &relay_key,
        DisplayName::new("Ada").unwrap(),
        UnixMillis(1),
    );
    let (mut socket, _, nonce) = TestClient::connect(&relay).await;
    let mut login = TestClient::login_frame(&ada, &relay_key, &nonce, Credentials::None);
    if let ClientToRelay::Login(login) = &mut login {
        login.profile = Some(profile);
    }
    support::send_frame(&mut socket, &login).await;
    assert!(matches!(
        support::next_frame(&mut socket).await,
        RelayToClient::Welcome { .. }
    ));
    support::send_frame(
        &mut socket,
        &ClientToRelay::Join {
            channel: ChannelName::new("general").unwrap(),
        },
    )
    .await;
    support::next_frame(&mut socket).await;

    let mut grace = relay.member(111).await;
    let members = grace.join("general").await;
    let shown = members
        .iter()
        .find(|member| member.key == ada.public_key())
        .and_then(|member| member.profile.clone());
    assert_eq!(
        shown
            .map(|profile| profile.display_name.as_str().to_owned())
            .as_deref(),
        Some("Ada")
    );

    let renamed = Profile::sign(
        &ada,
        &relay_key,
        DisplayName::new("Ada Lovelace").unwrap(),
        UnixMillis(2),
    );
    support::send_frame(&mut socket, &ClientToRelay::SetProfile { profile: renamed }).await;
    let update = grace
        .next_matching(|frame| {
            matches!(
                frame,
                RelayToClient::Presence {
                    change: PresenceChange::Updated,
                    ..
                }
            )
        })
        .await;
    let RelayToClient::Presence { member, .. } = update else {
        unreachable!()
    };
    assert_eq!(
        member.profile.unwrap().display_name.as_str(),
        "Ada Lovelace"
    );

    // A profile signed by someone else is refused.
    let impostor = Profile::sign(
        &SecretKey::from_seed([112; 32]),
        &relay_key,
        DisplayName::new("Ada").unwrap(),
        UnixMillis(3),
    );
    grace
        .send(&ClientToRelay::SetProfile { profile: impostor })
        .await;
    assert_eq!(grace.expect_error().await, ErrorCode::BadSignature);
    relay.stop().await;
}

#[tokio::test]
async fn attachment_descriptions_are_stamped_and_relayed_and_their_ids_reserved() {
    use peerchat_shared::ids::AttachmentId;
    use peerchat_shared::message::{Attachment, ClientNonce, Draft, MessageBody, Sha256Digest};
    let relay = TestRelay::start(config(Admission::Open)).await;
    let [mut alice, mut bob] = relay.members_in("general", [120, 121]).await;
    let file = |name: &str| Attachment {
        name: name.into(),
        media_type: "image/png".into(),
        size: 123_456,
        sha256: Sha256Digest([0xab; 32]),
        root: Sha256Digest([0xcd; 32]),
        image: None,
    };
    let (key, relay_key) = (alice.key.clone(), alice.relay);
    let sign = |nonce: u8, body: MessageBody| {
        Draft::sign(
            &key,
            &relay_key,
            ChannelName::new("general").unwrap(),
            ClientNonce([nonce; 16]),
            body,
        )
    };
    let body = MessageBody::with_attachments("", vec![file("cat.png"), file("dog.png")]);
    let draft = sign(1, body.clone());
    alice.send(&ClientToRelay::Send { draft }).await;
    let received = envelope_of(
        bob.next_matching(|frame| matches!(frame, RelayToClient::Message { .. }))
            .await,
    );
    assert_eq!(received.body, body);
    let first = received.id;
    received
        .verify(&relay.key.public_key().verifier().unwrap())
        .unwrap();

    let draft = sign(2, MessageBody::text("after the photos"));
    alice.send(&ClientToRelay::Send { draft }).await;
    let next = envelope_of(
        bob.next_matching(|frame| matches!(frame, RelayToClient::Message { .. }))
            .await,
    );
    let last_attachment = AttachmentId::of(first, 1).unwrap();
    assert!(
        next.id.to_string() > last_attachment.to_string(),
        "the ids of the attachments are reserved"
    );

    let eleven = MessageBody::with_attachments("", vec![file("a.png"); 11]);
    let mut frame = serde_json::to_value(ClientToRelay::Send {
        draft: sign(3, MessageBody::text("x")),
    })
    .unwrap();
    frame["draft"]["body"] = serde_json::to_value(&eleven).unwrap();
    alice.send_text(frame.to_string()).await;
    assert_eq!(alice.expect_error().await, ErrorCode::InvalidField);
    relay.stop().await;
}

#[tokio::test]
async fn sessions_are_limited_in_channels_and_connections_per_key() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.frame_burst = 1_000.0;
    relay_config.limits.connections_per_key = 2;
    let relay = TestRelay::start(relay_config).await;
    let mut member = relay.member(130).await;
    for index in 0..peerchat_shared::limits::MAX_CHANNELS_PER_SESSION {
        member.join(&format!("room-{index}")).await;
    }
    member
        .send(&ClientToRelay::Join {
            channel: ChannelName::new("one-too-many").unwrap(),
        })
        .await;
    assert_eq!(member.expect_error().await, ErrorCode::TooManyChannels);

    let _second_tab = relay.member(130).await;
    let (_, third_tab) = TestClient::login(&relay, 130, Credentials::None).await;
    assert_eq!(third_tab, Err(ErrorCode::TooManyConnections));
    relay.stop().await;
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_and_shutdown_delivers_queued_frames_first() {
    use futures_util::StreamExt as _;
    let mut relay_config = config(Admission::Open);
    relay_config.limits.ping_interval = Duration::from_millis(100);
    relay_config.limits.idle_timeout = Duration::from_millis(300);
    let relay = TestRelay::start(relay_config).await;
    let mut idle = relay.member(140).await;
    idle.join("general").await;
    let idle_session = idle.session;
    // The observer keeps reading, so it answers pings; the idle member reads nothing, so it
    // answers none, and the relay closes it.
    let mut observer = relay.member(143).await;
    observer.join("general").await;
    let left = observer.next_matching(support::is_presence_left).await;
    assert!(
        matches!(left, RelayToClient::Presence { member, .. } if member.session == idle_session)
    );
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match idle.socket.next().await {
                None
                | Some(Err(_))
                | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the relay never closed the idle connection");

    let mut relay_config = config(Admission::Open);
    relay_config.limits.idle_timeout = Duration::from_secs(3_600);
    let relay_two = TestRelay::start(relay_config).await;
    let mut alice = relay_two.member(141).await;
    let mut bob = relay_two.member(142).await;
    alice.join("general").await;
    bob.join("general").await;
    alice
        .send(&ClientToRelay::Send {
            draft: alice.draft("general", 1, "last words"),
        })
        .await;
    envelope_of(
        alice
            .next_matching(|frame| matches!(frame, RelayToClient::Ack { .. }))
            .await,
    );
    relay.stop().await;
    relay_two.stop().await;
    let frames_before_goodbye: Vec<RelayToClient> = tokio::time::timeout(PATIENCE, async {
        let mut frames = Vec::new();
        loop {
            match bob.socket.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    frames.push(peerchat_shared::codec::decode_relay_frame(text.as_str()).unwrap());
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => break frames,
            }
        }
    })
    .await
    .expect("the relay closed the connection after shutting down");
    let position =
        |wanted: fn(&RelayToClient) -> bool| frames_before_goodbye.iter().position(wanted);
    let message = position(|frame| matches!(frame, RelayToClient::Message { .. }))
        .expect("the queued message arrived");
    let goodbye = position(|frame| {
        matches!(
            frame,
            RelayToClient::Error {
                code: ErrorCode::ShuttingDown,
                ..
            }
        )
    })
    .expect("shutting_down arrived");
    assert!(message < goodbye);
}

#[tokio::test]
async fn member_lists_of_big_channels_arrive_complete_in_small_frames() {
    use peerchat_shared::limits::MEMBERS_PER_FRAME;
    let relay = TestRelay::start(config(Admission::Open)).await;
    let mut crowd = Vec::new();
    for seed in 150..190u8 {
        let mut member = relay.member(seed).await;
        member.join("crowd").await;
        crowd.push(member);
    }
    let mut newcomer = relay.member(200).await;
    newcomer
        .send(&ClientToRelay::Join {
            channel: ChannelName::new("crowd").unwrap(),
        })
        .await;
    let frames = newcomer.drain().await;
    let mut listed = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        let (RelayToClient::Joined { members, .. } | RelayToClient::Members { members, .. }) =
            frame
        else {
            panic!("unexpected frame {frame:?}");
        };
        assert_eq!(
            index == 0,
            matches!(frame, RelayToClient::Joined { .. }),
            "joined comes first"
        );
        assert!(members.len() <= MEMBERS_PER_FRAME);
        listed.extend(members.iter().map(|member| member.session));
    }
    let mut expected: Vec<SessionId> = crowd
        .iter()
        .map(|member| member.session)
        .chain([newcomer.session])
        .collect();
    listed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    assert_eq!(frames.len(), expected.len().div_ceil(MEMBERS_PER_FRAME));
    relay.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_from_an_address_are_refused_for_a_while() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.failed_logins_per_minute = 2.0;
    let relay = TestRelay::start(relay_config).await;
    let attempt = |signer: u8| {
        let relay = &relay;
        async move {
            let (mut socket, relay_key, nonce) = TestClient::connect(relay).await;
            let mut frame = TestClient::login_frame(
                &SecretKey::from_seed([signer; 32]),
                &relay_key,
                &nonce,
                Credentials::None,
            );
            if let ClientToRelay::Login(login) = &mut frame {
                login.key = SecretKey::from_seed([160; 32]).public_key();
            }
            support::send_frame(&mut socket, &frame).await;
            match support::next_frame(&mut socket).await {
                RelayToClient::Error { code, .. } => code,
                other => panic!("expected an error, got {other:?}"),
            }
        }
    };
    assert_eq!(attempt(161).await, ErrorCode::LoginFailed);
    assert_eq!(attempt(162).await, ErrorCode::LoginFailed);
    assert_eq!(attempt(163).await, ErrorCode::RateLimited);
    // Even a correct login from that address waits until the budget refills.
    let (_, honest) = TestClient::login(&relay, 160, Credentials::None).await;
    assert_eq!(honest, Err(ErrorCode::RateLimited));
    relay.stop().await;
}

#[tokio::test]
async fn connections_that_never_log_in_are_limited_per_address() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.pending_logins_per_address = 2;
    let relay = TestRelay::start(relay_config).await;
    let url = format!("ws://{}/ws", relay.address);
    let (first, _, _) = TestClient::connect(&relay).await;
    let (second, _, _) = TestClient::connect(&relay).await;
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // Logging in (or leaving) frees the place.
    drop(first);
    drop(second);
    let mut admitted = None;
    for _ in 0..100 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
            admitted = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted.is_some(), "a place was freed");
    assert!(relay
        .metrics()
        .await
        .contains("peerchat_rejections_total{reason=\"too_many_connections\"}"));
    relay.stop().await;
}

#[tokio::test]
async fn reconnecting_does_not_refill_a_keys_message_burst() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.message_burst = 3.0;
    relay_config.limits.messages_per_second = 0.001;
    let relay = TestRelay::start(relay_config).await;
    let [mut member] = relay.members_in("general", [79]).await;
    for nonce in 1..=3 {
        member
            .send(&ClientToRelay::Send {
                draft: member.draft("general", nonce, "burst"),
            })
            .await;
        envelope_of(
            member
                .next_matching(|frame| matches!(frame, RelayToClient::Ack { .. }))
                .await,
        );
    }
    drop(member);
    relay.wait_for_metric("peerchat_sessions 0").await;

    let [mut again] = relay.members_in("general", [79]).await;
    again
        .send(&ClientToRelay::Send {
            draft: again.draft("general", 4, "one more"),
        })
        .await;
    assert_eq!(again.expect_error().await, ErrorCode::RateLimited);
    relay.stop().await;
}

/// Opens a WebSocket from the loopback address `127.0.0.<host>` with `header` set; the HTTP
/// status when the relay turns the upgrade down.
async fn upgrade_from(
    relay: &TestRelay,
    host: u8,
    header: (&'static str, &str),
) -> Result<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://{}/ws", relay.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, host], 0).into()).unwrap();
    let stream = MaybeTlsStream::Plain(socket.connect(relay.address).await.unwrap());
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_gets_its_own_per_address_limits() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.pending_logins_per_address = 2;
    relay_config.trusted_proxy = "127.0.0.1".parse().unwrap();
    let relay = TestRelay::start(relay_config).await;
    let mut open = Vec::new();
    let forwarded = |client| ("x-forwarded-for", client);
    // Two clients behind the proxy at 127.0.0.1: each has its own two places.
    for client in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..2 {
            open.push(upgrade_from(&relay, 1, forwarded(client)).await.unwrap());
        }
        assert_eq!(
            upgrade_from(&relay, 1, forwarded(client)).await.err(),
            Some(503)
        );
    }
    // IPv6 clients count by /64: another address in the same /64 is the same client.
    for client in ["2001:db8:1:2::1", "2001:db8:1:2::2"] {
        open.push(upgrade_from(&relay, 1, forwarded(client)).await.unwrap());
    }
    let same_64 = forwarded("2001:db8:1:2:ffff::3");
    assert_eq!(upgrade_from(&relay, 1, same_64).await.err(), Some(503));
    open.push(
        upgrade_from(&relay, 1, forwarded("2001:db8:1:3::1"))
            .await
            .unwrap(),
    );
    // A connection that is not from the proxy cannot pose as other clients with the header.
    for client in ["198.51.100.1", "198.51.100.2"] {
        open.push(upgrade_from(&relay, 2, forwarded(client)).await.unwrap());
    }
    let spoofed = forwarded("198.51.100.3");
    assert_eq!(upgrade_from(&relay, 2, spoofed).await.err(), Some(503));
    drop(open);
    relay.stop().await;
}

#[tokio::test]
async fn new_keys_from_one_address_share_its_rates() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.message_burst = 2.0;
    relay_config.limits.messages_per_second = 0.001;
    relay_config.limits.address_rate_multiple = 2.0;
    relay_config.trusted_proxy = "127.0.0.1".parse().unwrap();
    let relay = TestRelay::start(relay_config).await;
    let from = |client| ("x-forwarded-for", client);
    let mut verdicts = Vec::new();
    // Six fresh keys from one address, one message each: the address's burst is four.
    for (seed, client) in (110..117).zip(["203.0.113.9"; 6].into_iter().chain(["203.0.113.10"])) {
        let socket = upgrade_from(&relay, 1, from(client)).await.unwrap();
        let (mut member, welcome) = TestClient::login_on(socket, seed, Credentials::None).await;
        welcome.unwrap();
        member.join("general").await;
        member
            .send(&ClientToRelay::Send {
                draft: member.draft("general", 1, "hello"),
            })
            .await;
        let answer = member
            .next_matching(|frame| {
                matches!(
                    frame,
                    RelayToClient::Ack { .. } | RelayToClient::Error { .. }
                )
            })
            .await;
        verdicts.push(match answer {
            RelayToClient::Error { code, .. } => Err(code),
            _ => Ok(()),
        });
    }
    let limited = Err(ErrorCode::RateLimited);
    assert_eq!(
        verdicts,
        [Ok(()), Ok(()), Ok(()), Ok(()), limited, limited, Ok(())],
        "the seventh key is at another address"
    );
    relay.stop().await;
}

#[tokio::test]
async fn behind_fly_the_fly_client_ip_header_names_the_client() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.pending_logins_per_address = 1;
    relay_config.trusted_proxy = "fly".parse().unwrap();
    let relay = TestRelay::start(relay_config).await;
    let fly = |client| ("fly-client-ip", client);
    let first = upgrade_from(&relay, 1, fly("203.0.113.1")).await.unwrap();
    let second = upgrade_from(&relay, 1, fly("203.0.113.2")).await.unwrap();
    assert_eq!(
        upgrade_from(&relay, 1, fly("203.0.113.2")).await.err(),
        Some(503)
    );
    drop((first, second));
    relay.stop().await;
}

#[tokio::test]
async fn an_invite_keeps_its_use_when_the_login_is_refused_for_being_full() {
    let mut relay_config = config(Admission::InviteOnly);
    relay_config.limits.max_sessions = 1;
    let relay = TestRelay::start(relay_config).await;
    let invite = invites::mint(&relay.key, Role::Member, 1, Duration::from_secs(3600));
    let first_invite = invites::mint(&relay.key, Role::Member, 1, Duration::from_secs(3600));
    let (first, admitted) = TestClient::login(&relay, 45, Credentials::Invite(first_invite)).await;
    assert_eq!(admitted, Ok(()));
    let (_, full) = TestClient::login(&relay, 46, Credentials::Invite(invite.clone())).await;
    assert_eq!(full, Err(ErrorCode::TooManyConnections));
    drop(first);
    relay.wait_for_metric("peerchat_sessions 0").await;
    let (_, later) = TestClient::login(&relay, 46, Credentials::Invite(invite)).await;
    assert_eq!(later, Ok(()));
    relay.stop().await;
}

#[tokio::test]
async fn websocket_pings_and_binary_messages_count_against_the_frame_rate() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let mut relay_config = config(Admission::Open);
    relay_config.limits.frame_burst = 5.0;
    relay_config.limits.frames_per_second = 0.001;
    relay_config.limits.max_rate_limit_strikes = 3;
    let relay = TestRelay::start(relay_config).await;
    for (seed, message) in [
        (82, Message::Ping(vec![1; 16].into())),
        (83, Message::Binary(vec![1; 16].into())),
    ] {
        let mut flooder = relay.member(seed).await;
        for _ in 0..20 {
            if flooder.socket.send(message.clone()).await.is_err() {
                break;
            }
        }
        let mut rate_limited = 0;
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match flooder.socket.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(text))) if text.contains("rate_limited") => {
                        rate_limited += 1
                    }
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{message:?}: never disconnected");
        assert_eq!(
            rate_limited, 4,
            "{message:?}: refused three times, then disconnected"
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn joining_again_pays_for_every_frame_of_the_member_list() {
    let mut relay_config = config(Admission::Open);
    relay_config.limits.frame_burst = 40.0;
    relay_config.limits.frames_per_second = 0.001;
    let relay = TestRelay::start(relay_config).await;
    // 17 members: the list takes three frames (8 per frame).
    let mut members = Vec::new();
    for seed in 120..136 {
        let mut member = relay.member(seed).await;
        member.join("general").await;
        members.push(member);
    }
    let mut rejoiner = relay.member(136).await;
    rejoiner.join("general").await;
    // The first join cost one frame; each re-join costs three: 39 left buys 13 re-joins.
    let again = ClientToRelay::Join {
        channel: ChannelName::new("general").unwrap(),
    };
    for _ in 0..13 {
        rejoiner.send(&again).await;
        rejoiner
            .next_matching(|frame| matches!(frame, RelayToClient::Joined { .. }))
            .await;
    }
    rejoiner.send(&again).await;
    assert_eq!(rejoiner.expect_error().await, ErrorCode::RateLimited);
    drop(members);
    relay.stop().await;
}
