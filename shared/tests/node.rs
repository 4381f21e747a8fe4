//! The node against a scripted relay: one drain rule for the session and the mesh, numbered
//! sockets and links whose stale events are ignored, and deliveries handed out in one batch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use peerchat_shared::client::ClientEvent;
use peerchat_shared::codec::{decode_client_frame, encode};
use peerchat_shared::frames::{
    ClientToRelay, MemberPresence, PresenceChange, RelayToClient, SessionId,
};
use peerchat_shared::identity::SecretKey;
use peerchat_shared::membership::Role;
use peerchat_shared::mesh::LinkEvent;
use peerchat_shared::node::{
    LinkNumber, Node, NodeConfig, NodeInput, NodeOutput, SocketEvent, SocketNumber,
};
use peerchat_shared::sync::SyncLimits;
use scripted_relay::{general, member_config, member_key, ScriptedRelay, NOW};

mod scripted_relay;

const FIRST_SOCKET: SocketNumber = SocketNumber(1);

fn node() -> Node {
    Node::new(
        NOW,
        NodeConfig {
            session: member_config(),
            mesh_seed: 7,
            sync_limits: SyncLimits::default(),
        },
    )
}

fn drain(node: &mut Node) -> Vec<NodeOutput> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn on_socket(node: &mut Node, socket: SocketNumber, event: SocketEvent) {
    node.handle(NOW, NodeInput::Socket { socket, event });
}

fn relay_frame(node: &mut Node, socket: SocketNumber, frame: &RelayToClient) {
    on_socket(node, socket, SocketEvent::Frame(encode(frame)));
}

fn sent_frames(outputs: &[NodeOutput]) -> Vec<ClientToRelay> {
    outputs
        .iter()
        .filter_map(|output| match output {
            NodeOutput::Transmit(text) => Some(decode_client_frame(text).unwrap()),
            _ => None,
        })
        .collect()
}

fn other_member(session: u64) -> MemberPresence {
    MemberPresence {
        key: SecretKey::from_seed([session as u8 + 50; 32]).public_key(),
        session: SessionId(session),
        role: Role::Member,
        profile: None,
    }
}

/// A node logged in to `relay` on its first socket and in `general` with `members`.
fn online_in_general(
    relay: &ScriptedRelay,
    members: Vec<MemberPresence>,
) -> (Node, Vec<NodeOutput>) {
    let mut node = node();
    assert!(drain(&mut node).contains(&NodeOutput::OpenSocket(FIRST_SOCKET)));
    on_socket(&mut node, FIRST_SOCKET, SocketEvent::Opened);
    relay_frame(&mut node, FIRST_SOCKET, &relay.challenge());
    relay_frame(&mut node, FIRST_SOCKET, &relay.welcome(&member_key()));
    drain(&mut node);
    assert!(node.is_online());
    let joined = RelayToClient::Joined {
        channel: general(),
        members,
    };
    relay_frame(&mut node, FIRST_SOCKET, &joined);
    let outputs = drain(&mut node);
    (node, outputs)
}

#[test]
fn events_of_a_socket_the_node_gave_up_are_ignored() {
    let relay = ScriptedRelay::new(1);
    let mut node = node();
    assert!(drain(&mut node).contains(&NodeOutput::OpenSocket(FIRST_SOCKET)));
    on_socket(&mut node, FIRST_SOCKET, SocketEvent::Closed);
    assert_eq!(drain(&mut node)[0], NodeOutput::CloseSocket);
    let retry_at = node.poll_timeout().expect("a reconnect is due");
    node.handle(retry_at, NodeInput::Timeout);
    let second = SocketNumber(2);
    assert!(drain(&mut node).contains(&NodeOutput::OpenSocket(second)));

    on_socket(&mut node, FIRST_SOCKET, SocketEvent::Opened);
    relay_frame(&mut node, FIRST_SOCKET, &relay.challenge());
    assert_eq!(
        drain(&mut node),
        vec![],
        "the first socket's events are stale"
    );

    on_socket(&mut node, second, SocketEvent::Opened);
    relay_frame(&mut node, second, &relay.challenge());
    let frames = sent_frames(&drain(&mut node));
    assert!(
        matches!(frames.as_slice(), [ClientToRelay::Login(_)]),
        "{frames:?}"
    );
}

#[test]
fn deliveries_fed_before_a_poll_come_out_as_one_batch_before_what_followed_them() {
    let mut relay = ScriptedRelay::new(1);
    let (mut node, _) = online_in_general(&relay, vec![]);
    let author = SecretKey::from_seed([9; 32]);
    let messages: Vec<_> = (0..3)
        .map(|index| relay.message_from(&author, &format!("message {index}")))
        .collect();
    for envelope in &messages {
        let delivery = RelayToClient::Message {
            envelope: envelope.clone(),
        };
        relay_frame(&mut node, FIRST_SOCKET, &delivery);
    }
    let arrival = RelayToClient::Presence {
        channel: general(),
        change: PresenceChange::Joined,
        member: other_member(2),
    };
    relay_frame(&mut node, FIRST_SOCKET, &arrival);

    let outputs = drain(&mut node);
    let NodeOutput::StoreDelivered(batch) = &outputs[0] else {
        panic!("the deliveries come first, in one batch: {outputs:?}");
    };
    let stored: Vec<_> = batch
        .iter()
        .map(|delivered| delivered.envelope.envelope().clone())
        .collect();
    assert_eq!(stored, messages);
    assert!(batch.iter().all(|delivered| !delivered.acknowledged));
    let batches = outputs
        .iter()
        .filter(|output| matches!(output, NodeOutput::StoreDelivered(_)))
        .count();
    assert_eq!(batches, 1);
    assert!(outputs
        .iter()
        .any(|output| matches!(output, NodeOutput::Event(ClientEvent::Members { .. }))));
}

#[test]
fn the_store_is_read_for_a_channel_only_after_what_was_delivered_before_is_stored() {
    let mut relay = ScriptedRelay::new(1);
    let mut node = node();
    drain(&mut node);
    on_socket(&mut node, FIRST_SOCKET, SocketEvent::Opened);
    relay_frame(&mut node, FIRST_SOCKET, &relay.challenge());
    relay_frame(&mut node, FIRST_SOCKET, &relay.welcome(&member_key()));
    drain(&mut node);
    // The join's answer and a message in one batch of frames, as a busy relay sends them.
    let joined = RelayToClient::Joined {
        channel: general(),
        members: vec![],
    };
    relay_frame(&mut node, FIRST_SOCKET, &joined);
    let author = SecretKey::from_seed([9; 32]);
    let envelope = relay.message_from(&author, "hello");
    relay_frame(
        &mut node,
        FIRST_SOCKET,
        &RelayToClient::Message { envelope },
    );
    let outputs = drain(&mut node);
    let position = |wanted: fn(&NodeOutput) -> bool| outputs.iter().position(wanted);
    let stored = position(|output| matches!(output, NodeOutput::StoreDelivered(_)));
    let read = position(|output| matches!(output, NodeOutput::ReadIds { .. }));
    assert!(
        stored.is_some() && read.is_some() && stored < read,
        "{outputs:?}"
    );
}

#[test]
fn a_links_events_count_only_under_the_number_the_node_gave_it() {
    let relay = ScriptedRelay::new(1);
    let (mut node, outputs) = online_in_general(&relay, vec![other_member(2)]);
    let link = outputs
        .iter()
        .find_map(|output| match output {
            NodeOutput::OpenLink {
                session: SessionId(2),
                link,
                offer: None,
                ..
            } => Some(*link),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the node offers a link to the member there: {outputs:?}"));
    let description = "v=0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n".to_owned();
    let on_link = |link| NodeInput::Link {
        session: SessionId(2),
        link,
        event: LinkEvent::Description(description.clone()),
    };

    node.handle(NOW, on_link(LinkNumber(link.0 + 1)));
    assert_eq!(
        sent_frames(&drain(&mut node)),
        vec![],
        "not this link's number"
    );

    node.handle(NOW, on_link(link));
    let frames = sent_frames(&drain(&mut node));
    assert!(
        matches!(
            frames.as_slice(),
            [ClientToRelay::Signal {
                to: SessionId(2),
                ..
            }]
        ),
        "{frames:?}"
    );
}
