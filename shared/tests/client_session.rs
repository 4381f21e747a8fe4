//! The member's protocol state machine against a scripted relay built from the real signing
//! code: login and the relay-key pin, the outbox, verification, presence and reconnecting.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use peerchat_shared::channel::ChannelName;
use peerchat_shared::client::{
    ClientConfig, ClientEvent, ClientInput, ClientOutput, ClientSession, ConnectionState,
    OutboxEntry, FIRST_BACKOFF_MILLIS, MAX_BACKOFF_MILLIS, RATE_LIMITED_RESEND_MILLIS,
};
use peerchat_shared::codec::{decode_client_frame, encode};
use peerchat_shared::frames::{
    ChannelSummary, ClientToRelay, ErrorCode, MemberPresence, PresenceChange, RelayToClient,
    SessionId,
};
use peerchat_shared::identity::{SecretKey, Signature};
use peerchat_shared::login::verify_login;
use peerchat_shared::membership::{DisplayName, Profile, Role};
use peerchat_shared::message::{ClientNonce, Draft, Envelope, MessageBody};
use peerchat_shared::time::UnixMillis;
use scripted_relay::{general, member_config, member_key, ScriptedRelay, NOW};

mod scripted_relay;

fn frame(frame: &RelayToClient) -> ClientInput {
    ClientInput::Frame(encode(frame))
}

fn config() -> ClientConfig {
    member_config()
}

fn drain(session: &mut ClientSession) -> Vec<ClientOutput> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

fn sent_frames(outputs: &[ClientOutput]) -> Vec<ClientToRelay> {
    outputs
        .iter()
        .filter_map(|output| match output {
            ClientOutput::Transmit(text) => Some(decode_client_frame(text).unwrap()),
            _ => None,
        })
        .collect()
}

fn events(outputs: &[ClientOutput]) -> Vec<&ClientEvent> {
    outputs
        .iter()
        .filter_map(|output| match output {
            ClientOutput::Event(event) => Some(event),
            _ => None,
        })
        .collect()
}

fn stored(outputs: &[ClientOutput]) -> Vec<(Envelope, bool)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            ClientOutput::Store {
                envelope,
                acknowledged,
            } => Some((envelope.envelope().clone(), *acknowledged)),
            _ => None,
        })
        .collect()
}

/// A session that has logged in to `relay`; returns the outputs of the login.
fn logged_in(relay: &ScriptedRelay, config: ClientConfig) -> (ClientSession, Vec<ClientOutput>) {
    let mut session = ClientSession::new(NOW, config);
    session.handle(NOW, ClientInput::SocketOpened);
    session.handle(NOW, frame(&relay.challenge()));
    session.handle(NOW, frame(&relay.welcome(&member_key())));
    let outputs = drain(&mut session);
    assert!(session.is_online());
    (session, outputs)
}

fn send(session: &mut ClientSession, nonce: u8, text: &str) {
    session.handle(
        NOW,
        ClientInput::Send {
            channel: general(),
            body: MessageBody::text(text),
            nonce: ClientNonce([nonce; 16]),
        },
    );
}

#[test]
fn login_answers_the_challenge_pins_the_relay_key_and_joins_the_default_channels() {
    let relay = ScriptedRelay::new(1);
    let (_, outputs) = logged_in(&relay, config());
    assert_eq!(
        outputs[0],
        ClientOutput::Event(ClientEvent::Channels {
            channels: vec![],
            joined: vec![]
        })
    );
    assert_eq!(outputs[1], ClientOutput::Connect);
    assert!(outputs.contains(&ClientOutput::PinRelayKey(relay.key.public_key())));
    let frames = sent_frames(&outputs);
    let ClientToRelay::Login(login) = &frames[0] else {
        panic!("the first frame must be the login, got {frames:?}");
    };
    let verifier = member_key().public_key().verifier().unwrap();
    verify_login(
        &verifier,
        &relay.key.public_key(),
        &relay.nonce,
        &login.signature,
    )
    .expect("the login answer verifies");
    assert_eq!(frames[1], ClientToRelay::Join { channel: general() });
    assert!(outputs.contains(&ClientOutput::SaveCertificate(Some(
        relay.certificate(&member_key(), NOW)
    ))));
    assert!(events(&outputs).contains(&&ClientEvent::Connection {
        state: ConnectionState::Online,
        retry_in_millis: None
    }));
}

#[test]
fn a_member_joins_its_own_and_the_default_channels_not_everything_listed() {
    let relay = ScriptedRelay::new(1);
    let kitchen = ChannelName::new("kitchen").unwrap();
    let mut session = ClientSession::new(
        NOW,
        ClientConfig {
            known_channels: vec![kitchen.clone()],
            ..config()
        },
    );
    session.handle(NOW, ClientInput::SocketOpened);
    session.handle(NOW, frame(&relay.challenge()));
    // Strangers' sessions fill the list with channels named to sort first.
    let mut channels = vec![ChannelSummary {
        name: general(),
        online: 1,
        default: true,
    }];
    channels.extend((0..63).map(|n| ChannelSummary {
        name: ChannelName::new(format!("0spam{n}")).unwrap(),
        online: 9,
        default: false,
    }));
    let welcome = RelayToClient::Welcome {
        session: SessionId(1),
        role: Role::Member,
        certificate: relay.certificate(&member_key(), NOW),
        channels: channels.clone(),
        ice_servers: vec![],
    };
    session.handle(NOW, frame(&welcome));
    let outputs = drain(&mut session);
    let joins: Vec<ClientToRelay> = sent_frames(&outputs)
        .into_iter()
        .filter(|frame| matches!(frame, ClientToRelay::Join { .. }))
        .collect();
    assert_eq!(
        joins,
        [
            ClientToRelay::Join { channel: general() },
            ClientToRelay::Join {
                channel: kitchen.clone()
            },
        ]
    );
    let kept = ClientEvent::Channels {
        channels,
        joined: vec![general(), kitchen.clone()],
    };
    assert_eq!(events(&outputs).last(), Some(&&kept), "what the page keeps");

    // Opening a listed channel joins it, and it is kept from then on.
    let chosen = ChannelName::new("0spam7").unwrap();
    session.handle(NOW, ClientInput::Join(chosen.clone()));
    let outputs = drain(&mut session);
    assert_eq!(
        sent_frames(&outputs),
        [ClientToRelay::Join {
            channel: chosen.clone()
        }]
    );
    assert!(events(&outputs).iter().any(|event| matches!(
        event,
        ClientEvent::Channels { joined, .. } if *joined == [chosen.clone(), general(), kitchen.clone()]
    )));
}

#[test]
fn a_changed_relay_key_stops_the_session_before_anything_is_sent() {
    let genuine = ScriptedRelay::new(1);
    let impostor = ScriptedRelay::new(2);
    let mut session = ClientSession::new(
        NOW,
        ClientConfig {
            pinned_relay: Some(genuine.key.public_key()),
            ..config()
        },
    );
    session.handle(NOW, ClientInput::SocketOpened);
    session.handle(NOW, frame(&impostor.challenge()));
    let outputs = drain(&mut session);
    assert!(sent_frames(&outputs).is_empty());
    assert!(outputs.contains(&ClientOutput::Close));
    let stopped = events(&outputs).into_iter().any(|event| {
        matches!(event, ClientEvent::Stopped { message }
            if message.contains(&genuine.key.public_key().to_string())
            && message.contains(&impostor.key.public_key().to_string()))
    });
    assert!(stopped, "the member is told both keys: {outputs:?}");
    session.handle(NOW, ClientInput::SocketClosed);
    assert_eq!(session.poll_timeout(), None, "no reconnect to an impostor");
}

#[test]
fn a_message_written_offline_waits_in_the_outbox_and_is_sent_once_after_login() {
    let mut relay = ScriptedRelay::new(1);
    let mut session = ClientSession::new(NOW, config());
    drain(&mut session);
    send(&mut session, 9, "written offline");
    let outputs = drain(&mut session);
    assert!(sent_frames(&outputs).is_empty());
    let ClientOutput::OutboxPut(entry) = &outputs[0] else {
        panic!("the message is persisted first: {outputs:?}");
    };
    assert_eq!(entry.nonce, ClientNonce([9; 16]));

    session.handle(NOW, frame(&relay.challenge()));
    session.handle(NOW, frame(&relay.welcome(&member_key())));
    let frames = sent_frames(&drain(&mut session));
    let ClientToRelay::Send { draft } = frames.last().unwrap() else {
        panic!("the outbox is flushed after joining: {frames:?}");
    };
    assert_eq!(draft.nonce, ClientNonce([9; 16]));
    let envelope = relay.stamp(&member_key(), draft.clone());
    session.handle(
        NOW,
        frame(&RelayToClient::Ack {
            envelope: envelope.clone(),
        }),
    );
    assert_eq!(stored(&drain(&mut session)), vec![(envelope, true)]);

    session.handle(NOW, ClientInput::SocketClosed);
    let retry_at = session.poll_timeout().unwrap();
    session.handle(retry_at, ClientInput::Timeout);
    session.handle(retry_at, frame(&relay.challenge()));
    session.handle(retry_at, frame(&relay.welcome(&member_key())));
    let resent = sent_frames(&drain(&mut session))
        .into_iter()
        .filter(|frame| matches!(frame, ClientToRelay::Send { .. }))
        .count();
    assert_eq!(resent, 0, "an acknowledged message is not sent again");
}

#[test]
fn an_unacknowledged_message_is_resent_with_the_same_nonce_after_a_reload() {
    let relay = ScriptedRelay::new(1);
    let kept = OutboxEntry {
        channel: general(),
        nonce: ClientNonce([3; 16]),
        body: MessageBody::text("sent before the reload"),
        queued_at: UnixMillis(NOW.0 - 1_000),
    };
    let (_, outputs) = logged_in(
        &relay,
        ClientConfig {
            outbox: vec![kept.clone()],
            ..config()
        },
    );
    assert!(events(&outputs).contains(&&ClientEvent::Pending {
        entry: kept.clone()
    }));
    let drafts: Vec<Draft> = sent_frames(&outputs)
        .into_iter()
        .filter_map(|frame| match frame {
            ClientToRelay::Send { draft } => Some(draft),
            _ => None,
        })
        .collect();
    assert_eq!(drafts.len(), 1);
    assert_eq!((drafts[0].nonce, &drafts[0].body), (kept.nonce, &kept.body));
}

#[test]
fn only_envelopes_with_both_signatures_intact_are_stored() {
    let mut relay = ScriptedRelay::new(1);
    let (mut session, _) = logged_in(&relay, config());
    let author = SecretKey::from_seed([8; 32]);

    let honest = relay.message_from(&author, "hello");
    let mut altered_text = relay.message_from(&author, "original");
    altered_text.body = MessageBody::text("altered");
    let mut forged_by_relay = relay.message_from(&author, "stamp forged");
    forged_by_relay.relay_signature = Signature([7; 64]);
    let other_relay_stamp = ScriptedRelay::new(3).message_from(&author, "other relay");

    for envelope in [
        altered_text,
        forged_by_relay,
        other_relay_stamp,
        honest.clone(),
    ] {
        session.handle(NOW, frame(&RelayToClient::Message { envelope }));
    }
    let outputs = drain(&mut session);
    assert_eq!(stored(&outputs), vec![(honest, false)]);
    let problems = events(&outputs)
        .into_iter()
        .filter(|event| {
            matches!(
                event,
                ClientEvent::Problem {
                    code: Some(ErrorCode::BadSignature),
                    ..
                }
            )
        })
        .count();
    assert_eq!(problems, 3, "each discarded message is reported");
}

#[test]
fn reconnects_back_off_exponentially_with_jitter_and_a_ceiling() {
    let mut session = ClientSession::new(NOW, config());
    let mut now = NOW;
    let mut delays = vec![];
    for _ in 0..12 {
        session.handle(now, ClientInput::SocketClosed);
        let retry_at = session.poll_timeout().unwrap();
        delays.push(retry_at.0 - now.0);
        now = retry_at;
        session.handle(now, ClientInput::Timeout);
        assert!(drain(&mut session).contains(&ClientOutput::Connect));
    }
    for (attempt, delay) in delays.iter().enumerate() {
        let ceiling = (FIRST_BACKOFF_MILLIS << attempt).min(MAX_BACKOFF_MILLIS);
        assert!(
            (ceiling / 2..=ceiling).contains(delay),
            "attempt {attempt}: {delay} ms outside {}..={ceiling}",
            ceiling / 2
        );
    }
    assert!(delays[11] >= MAX_BACKOFF_MILLIS / 2);

    let relay = ScriptedRelay::new(1);
    session.handle(now, frame(&relay.challenge()));
    session.handle(now, frame(&relay.welcome(&member_key())));
    session.handle(now, ClientInput::SocketClosed);
    let after_success = session.poll_timeout().unwrap().0 - now.0;
    assert!(
        after_success <= FIRST_BACKOFF_MILLIS,
        "a welcome resets the backoff"
    );
}

#[test]
fn a_relay_that_never_answers_the_login_is_given_up_and_retried() {
    let mut session = ClientSession::new(NOW, config());
    drain(&mut session);
    session.handle(NOW, ClientInput::SocketOpened);
    let deadline = session.poll_timeout().unwrap();
    session.handle(deadline, ClientInput::Timeout);
    let outputs = drain(&mut session);
    assert!(outputs.contains(&ClientOutput::Close));
    assert!(events(&outputs).iter().any(|event| matches!(
        event,
        ClientEvent::Connection {
            state: ConnectionState::Offline,
            ..
        }
    )));
    assert!(session.poll_timeout().unwrap() > deadline);
}

#[test]
fn a_rate_limited_message_stays_queued_and_a_refused_one_is_reported_and_dropped() {
    let relay = ScriptedRelay::new(1);
    let (mut session, _) = logged_in(&relay, config());
    send(&mut session, 1, "too fast");
    send(&mut session, 2, "refused");
    drain(&mut session);
    let refusal = |code, nonce| {
        frame(&RelayToClient::Error {
            code,
            message: "no".into(),
            nonce: Some(ClientNonce([nonce; 16])),
        })
    };
    session.handle(NOW, refusal(ErrorCode::RateLimited, 1));
    session.handle(NOW, refusal(ErrorCode::Forbidden, 2));
    let outputs = drain(&mut session);
    assert!(outputs.contains(&ClientOutput::OutboxRemove(ClientNonce([2; 16]))));
    assert!(!outputs.contains(&ClientOutput::OutboxRemove(ClientNonce([1; 16]))));
    assert!(events(&outputs).iter().any(|event| matches!(
        event,
        ClientEvent::SendFailed {
            code: ErrorCode::Forbidden,
            ..
        }
    )));

    let resend_at = session.poll_timeout().unwrap();
    assert_eq!(
        resend_at,
        NOW.saturating_add_millis(RATE_LIMITED_RESEND_MILLIS)
    );
    session.handle(resend_at, ClientInput::Timeout);
    let nonces: Vec<ClientNonce> = sent_frames(&drain(&mut session))
        .into_iter()
        .filter_map(|frame| match frame {
            ClientToRelay::Send { draft } => Some(draft.nonce),
            _ => None,
        })
        .collect();
    assert_eq!(nonces, vec![ClientNonce([1; 16])]);
}

#[test]
fn an_invalid_message_is_refused_before_it_reaches_the_outbox() {
    let mut session = ClientSession::new(NOW, config());
    drain(&mut session);
    send(&mut session, 1, "");
    let outputs = drain(&mut session);
    assert!(matches!(
        &outputs[..],
        [ClientOutput::Event(ClientEvent::SendFailed {
            code: ErrorCode::InvalidField,
            ..
        })]
    ));
}

#[test]
fn presence_lists_each_member_once_with_a_verified_profile_and_forgets_who_left() {
    let relay = ScriptedRelay::new(1);
    let (mut session, _) = logged_in(&relay, config());
    let friend = SecretKey::from_seed([8; 32]);
    let profile = Profile::sign(
        &friend,
        &relay.key.public_key(),
        DisplayName::new("Ada").unwrap(),
        NOW,
    );
    let presence = |key: &SecretKey, session: u64, profile: Option<Profile>| MemberPresence {
        key: key.public_key(),
        session: SessionId(session),
        role: Role::Member,
        profile,
    };
    session.handle(
        NOW,
        frame(&RelayToClient::Joined {
            channel: general(),
            members: vec![
                presence(&member_key(), 1, None),
                presence(&friend, 2, Some(profile.clone())),
                presence(&friend, 3, Some(profile.clone())),
            ],
        }),
    );
    let outputs = drain(&mut session);
    assert!(outputs.contains(&ClientOutput::SaveProfile(profile)));
    let Some(ClientEvent::Members { members, .. }) = events(&outputs).last().copied() else {
        panic!("a member list follows the join: {outputs:?}");
    };
    assert_eq!(members.len(), 2, "two tabs of one member are one member");
    let ada = members.iter().find(|m| !m.is_me).unwrap();
    assert_eq!(
        ada.display_name.as_ref().map(DisplayName::as_str),
        Some("Ada")
    );

    // Someone arriving has their profile checked and saved; those already there are not again.
    let grace = SecretKey::from_seed([9; 32]);
    let grace_profile = Profile::sign(
        &grace,
        &relay.key.public_key(),
        DisplayName::new("Grace").unwrap(),
        NOW,
    );
    session.handle(
        NOW,
        frame(&RelayToClient::Presence {
            channel: general(),
            change: PresenceChange::Joined,
            member: presence(&grace, 4, Some(grace_profile.clone())),
        }),
    );
    let saved: Vec<ClientOutput> = drain(&mut session)
        .into_iter()
        .filter(|output| matches!(output, ClientOutput::SaveProfile(_)))
        .collect();
    assert_eq!(saved, vec![ClientOutput::SaveProfile(grace_profile)]);

    for (key, tab) in [(&friend, 2), (&friend, 3), (&grace, 4)] {
        session.handle(
            NOW,
            frame(&RelayToClient::Presence {
                channel: general(),
                change: PresenceChange::Left,
                member: presence(key, tab, None),
            }),
        );
    }
    let outputs = drain(&mut session);
    let Some(ClientEvent::Members { members, .. }) = events(&outputs).last().copied() else {
        panic!("a member list follows each change: {outputs:?}");
    };
    assert_eq!(
        members.iter().map(|m| m.is_me).collect::<Vec<_>>(),
        vec![true]
    );

    session.handle(NOW, ClientInput::SocketClosed);
    let outputs = drain(&mut session);
    assert!(
        events(&outputs).contains(&&ClientEvent::Members {
            channel: general(),
            members: vec![]
        }),
        "nobody is shown online while the relay is out of reach"
    );
}

#[test]
fn a_rejected_certificate_is_forgotten_and_a_ban_stops_the_session() {
    let relay = ScriptedRelay::new(1);
    let mut session = ClientSession::new(
        NOW,
        ClientConfig {
            certificate: Some(relay.certificate(&member_key(), UnixMillis(0))),
            ..config()
        },
    );
    session.handle(NOW, frame(&relay.challenge()));
    let refusal = |code| {
        frame(&RelayToClient::Error {
            code,
            message: "refused".into(),
            nonce: None,
        })
    };
    session.handle(NOW, refusal(ErrorCode::InvalidCredential));
    assert!(drain(&mut session).contains(&ClientOutput::SaveCertificate(None)));
    session.handle(NOW, ClientInput::SocketClosed);
    let retry_at = session.poll_timeout().unwrap();
    session.handle(retry_at, ClientInput::Timeout);
    session.handle(retry_at, frame(&relay.challenge()));
    let frames = sent_frames(&drain(&mut session));
    let Some(ClientToRelay::Login(login)) = frames.last() else {
        panic!("logs in again: {frames:?}");
    };
    assert_eq!(login.certificate, None);
    session.handle(retry_at, refusal(ErrorCode::Banned));
    assert!(events(&drain(&mut session))
        .iter()
        .any(|event| matches!(event, ClientEvent::Stopped { .. })));
    session.handle(retry_at, ClientInput::SocketClosed);
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn an_unreadable_frame_from_the_relay_is_reported_and_the_session_carries_on() {
    let mut relay = ScriptedRelay::new(1);
    let (mut session, _) = logged_in(&relay, config());
    for garbage in [
        "not json",
        "{\"type\":\"from_the_future\"}",
        "{\"type\":\"message\"}",
    ] {
        session.handle(NOW, ClientInput::Frame(garbage.into()));
    }
    let outputs = drain(&mut session);
    let codes: Vec<Option<ErrorCode>> = events(&outputs)
        .into_iter()
        .filter_map(|event| match event {
            ClientEvent::Problem { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        [
            Some(ErrorCode::MalformedFrame),
            Some(ErrorCode::UnknownType),
            Some(ErrorCode::InvalidField)
        ]
    );
    assert!(session.is_online());
    let envelope = relay.message_from(&SecretKey::from_seed([8; 32]), "still here");
    session.handle(
        NOW,
        frame(&RelayToClient::Message {
            envelope: envelope.clone(),
        }),
    );
    assert_eq!(stored(&drain(&mut session)), vec![(envelope, false)]);
}
