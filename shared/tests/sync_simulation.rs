//! The sync engine in a deterministic simulation (see `simulation/`): reconciliation, newest
//! first fetching, malicious peers, push gossip, and convergence despite loss, a partition and
//! churn.
//! The small scenarios also run compiled to wasm32 in the browser, where the engine will live;
//! the hundred-peer ones are native only (they are workloads of seconds of CPU).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod simulation;

use peerchat_shared::ids::MessageId;
use peerchat_shared::message::MessageBody;
use simulation::{history, ids_of, Simulation};
use std::collections::BTreeSet;

#[test]
fn two_peers_with_interleaved_gaps_reconcile_to_the_union() {
    let envelopes = history(600);
    let mut sim = Simulation::new(2, 1, 7, &envelopes);
    let evens: BTreeSet<MessageId> = envelopes.iter().step_by(2).map(|e| e.id).collect();
    let every_third: BTreeSet<MessageId> =
        envelopes.iter().skip(1).step_by(3).map(|e| e.id).collect();
    let union: BTreeSet<MessageId> = evens.union(&every_third).copied().collect();
    sim.seed_history(0, evens.clone());
    sim.seed_history(1, every_third.clone());
    sim.bring_online(0);
    sim.bring_online(1);
    sim.drain_outputs();
    assert!(
        sim.run_until_converged(&union, 200).is_some(),
        "both end with the union"
    );
    assert_eq!(
        sim.peers[0].received,
        union.len() - evens.len(),
        "each gap travels once"
    );
    assert_eq!(sim.peers[1].received, union.len() - every_third.len());
}

#[test]
fn a_newcomer_receives_everything_and_newest_first() {
    let envelopes = history(1_000);
    let mut sim = Simulation::new(2, 1, 3, &envelopes);
    sim.fixed_delay = true;
    sim.seed_history(0, ids_of(&envelopes));
    sim.bring_online(0);
    sim.bring_online(1);
    sim.drain_outputs();
    let mut first_batch_tick_newest = None;
    while sim.peers[1].held.len() < 1_000 && sim.tick < 300 {
        sim.step();
        if first_batch_tick_newest.is_none() && !sim.peers[1].held.is_empty() {
            first_batch_tick_newest = sim.peers[1].held.iter().next_back().copied();
        }
    }
    assert_eq!(sim.peers[1].held.len(), 1_000);
    assert_eq!(
        first_batch_tick_newest,
        envelopes.last().map(|e| e.id),
        "the newest messages come first"
    );
    assert_eq!(sim.peers[1].received, 1_000, "no message travels twice");
}

#[test]
fn a_peer_offering_altered_envelopes_is_dropped_and_honest_peers_complete_the_sync() {
    let envelopes = history(300);
    let mut sim = Simulation::new(3, 2, 11, &envelopes);
    sim.seed_history(0, ids_of(&envelopes));
    sim.seed_history(1, ids_of(&envelopes));
    sim.peers[0].malicious = true;
    // The newcomer meets the malicious peer first and asks it for everything.
    sim.bring_online(0);
    sim.bring_online(2);
    sim.drain_outputs();
    for _ in 0..10 {
        sim.step();
    }
    assert!(sim.peers[2].held.is_empty(), "nothing altered was stored");
    sim.bring_online(1);
    sim.drain_outputs();
    let ticks = sim.run_until_converged(&ids_of(&envelopes), 400);
    assert!(
        ticks.is_some(),
        "the newcomer gets everything from the honest peer"
    );
    let dropped = &sim.peers[2].dropped;
    assert!(
        dropped
            .iter()
            .any(|(peer, reason)| *peer == 0 && reason.contains("author")),
        "the newcomer dropped the malicious peer: {dropped:?}"
    );
    let tampered = MessageBody::text("rewritten by a malicious peer");
    let stored_tampered = sim
        .check
        .verified
        .borrow()
        .values()
        .any(|v| v.envelope().body == tampered);
    assert!(!stored_tampered);
}

/// Workloads of seconds of CPU: native only.
#[cfg(not(target_arch = "wasm32"))]
mod hundreds_of_peers {
    use super::*;
    use peerchat_shared::random::SeededRandom;
    use std::collections::BTreeMap;

    #[test]
    fn a_new_message_reaches_every_peer_by_push_in_a_few_rounds() {
        let envelopes = history(1);
        let mut sim = Simulation::new(300, 8, 5, &envelopes);
        for peer in 0..300 {
            sim.bring_online(peer);
        }
        sim.drain_outputs();
        for _ in 0..40 {
            sim.step();
        }
        let before: usize = sim.peers.iter().map(|p| p.received).sum();
        sim.post(0, &envelopes[0]);
        sim.drain_outputs();
        let start = sim.tick;
        let mut ticks_to_80_percent = None;
        while sim.holding(envelopes[0].id) < 300 && sim.tick - start < 400 {
            sim.step();
            if ticks_to_80_percent.is_none() && sim.holding(envelopes[0].id) >= 240 {
                ticks_to_80_percent = Some(sim.tick - start);
            }
        }
        let ticks = sim.tick - start;
        let transfers: usize = sim.peers.iter().map(|p| p.received).sum::<usize>() - before;
        assert!(
            ticks_to_80_percent.is_some_and(|t| t <= 20),
            "80% after {ticks_to_80_percent:?} ticks"
        );
        assert!(ticks <= 40, "everyone after {ticks} ticks");
        assert!(transfers < 10 * 300, "{transfers} transfers for 300 peers");
        assert_eq!(sim.holding(envelopes[0].id), 300);
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn peers_converge_despite_loss_a_partition_and_churn() {
        let envelopes = history(400);
        let mut sim = Simulation::new(120, 6, 9, &envelopes);
        sim.loss_percent = 5;
        // Each message starts at one random peer.
        let mut random = SeededRandom::new(99);
        let mut origins: BTreeMap<usize, Vec<MessageId>> = BTreeMap::new();
        for envelope in &envelopes {
            origins
                .entry(random.below(120))
                .or_default()
                .push(envelope.id);
        }
        for (peer, ids) in origins {
            sim.seed_history(peer, ids);
        }
        for peer in 0..120 {
            sim.bring_online(peer);
        }
        sim.drain_outputs();
        sim.partition = Some((0..60).collect());
        for round in 0..200 {
            if round % 10 == 0 {
                let leaving = random.below(120);
                sim.take_offline(leaving);
                let returning = random.below(120);
                if !sim.peers[returning].online {
                    sim.bring_online(returning);
                    sim.drain_outputs();
                }
            }
            sim.step();
        }
        sim.partition = None;
        for peer in 0..120 {
            if !sim.peers[peer].online {
                sim.bring_online(peer);
            }
        }
        sim.drain_outputs();
        let ticks = sim.run_until_converged(&ids_of(&envelopes), 2_000);
        let short: Vec<(usize, usize)> = sim
            .peers
            .iter()
            .enumerate()
            .filter(|(_, peer)| peer.held.len() < 400)
            .map(|(index, peer)| (index, peer.held.len()))
            .collect();
        assert!(
            ticks.is_some(),
            "every online peer ends with all 400 messages; short: {short:?}"
        );
        assert!(
            sim.peers.iter().all(|peer| peer.dropped.is_empty()),
            "no honest peer was dropped"
        );
    }
}

#[test]
fn a_reconcile_reply_that_comes_after_the_reconciliation_was_given_up_is_ignored() {
    use peerchat_shared::identity::SecretKey;
    use peerchat_shared::peer::PeerToPeer;
    use peerchat_shared::sync::{SyncEngine, SyncInput, SyncLimits, SyncOutput};
    use peerchat_shared::time::UnixMillis;

    let relay = SecretKey::from_seed([1; 32])
        .public_key()
        .verifier()
        .unwrap();
    let limits = SyncLimits::default();
    let timeout = limits.request_timeout_millis;
    let mut engine = SyncEngine::new(relay, limits, 3);
    let channel = simulation::general();
    let now = UnixMillis(1_000);
    engine.handle(
        now,
        SyncInput::Join {
            channel: channel.clone(),
            ids: vec![],
        },
    );
    engine.handle(
        now,
        SyncInput::PeerUp {
            peer: 1,
            channels: vec![channel.clone()],
            archive: false,
        },
    );
    let query = std::iter::from_fn(|| engine.poll_output())
        .find_map(|output| match output {
            SyncOutput::Send {
                peer: 1,
                frame: PeerToPeer::ReconcileQuery { message, .. },
            } => Some(message),
            _ => None,
        })
        .expect("a reconciliation with peer 1 starts");
    // Peer 1 is too busy to answer in time: the reconciliation is given up.
    let now = now.saturating_add_millis(timeout + 1);
    engine.handle(now, SyncInput::Timeout);
    while engine.poll_output().is_some() {}

    let reply = |peer| SyncInput::Frame {
        peer,
        frame: PeerToPeer::ReconcileReply {
            channel: channel.clone(),
            message: query.clone(),
        },
    };
    engine.handle(now, reply(1));
    let after_late_reply: Vec<SyncOutput> = std::iter::from_fn(|| engine.poll_output()).collect();
    assert!(
        !after_late_reply
            .iter()
            .any(|output| matches!(output, SyncOutput::Disconnect { .. })),
        "a reply that was asked for, only late, is no offence: {after_late_reply:?}"
    );
}

#[test]
fn a_peer_learns_and_gets_nothing_of_a_channel_it_is_not_in() {
    use peerchat_shared::channel::ChannelName;
    use peerchat_shared::identity::SecretKey;
    use peerchat_shared::peer::PeerToPeer;
    use peerchat_shared::sync::{SyncEngine, SyncInput, SyncLimits, SyncOutput};
    use peerchat_shared::time::UnixMillis;

    let relay = SecretKey::from_seed([1; 32])
        .public_key()
        .verifier()
        .unwrap();
    let mut engine = SyncEngine::new(relay, SyncLimits::default(), 5);
    let now = UnixMillis(1_000_000);
    let [general, secret] = ["general", "secret"].map(|name| ChannelName::new(name).unwrap());
    let ids: Vec<MessageId> = history(2).iter().map(|envelope| envelope.id).collect();
    engine.handle(
        now,
        SyncInput::Join {
            channel: general.clone(),
            ids: vec![ids[0]],
        },
    );
    engine.handle(
        now,
        SyncInput::Join {
            channel: secret.clone(),
            ids: vec![ids[1]],
        },
    );
    // The peer shares #general only (the relay's presence frames say who is where).
    let peer = 7;
    engine.handle(
        now,
        SyncInput::PeerUp {
            peer,
            channels: vec![general.clone()],
            archive: false,
        },
    );
    while engine.poll_output().is_some() {}

    let asks = |channel: &ChannelName, id| SyncInput::Frame {
        peer,
        frame: PeerToPeer::Want {
            channel: channel.clone(),
            ids: vec![id],
        },
    };
    engine.handle(now, asks(&secret, ids[1]));
    engine.handle(
        now,
        SyncInput::Frame {
            peer,
            frame: PeerToPeer::Have {
                channel: secret,
                ids: vec![ids[0]],
            },
        },
    );
    let mut outputs = Vec::new();
    while let Some(output) = engine.poll_output() {
        outputs.push(output);
    }
    assert!(outputs.is_empty(), "{outputs:?}");

    // The same request for the channel they share is served.
    engine.handle(now, asks(&general, ids[0]));
    assert!(matches!(
        engine.poll_output(),
        Some(SyncOutput::Load { channel, .. }) if channel == general
    ));
}

#[test]
fn envelopes_already_held_are_not_checked_again() {
    use peerchat_shared::channel::ChannelName;
    use peerchat_shared::identity::{SecretKey, Verifier};
    use peerchat_shared::message::{BatchRejection, Envelope, EnvelopeRejected, VerifiedEnvelope};
    use peerchat_shared::peer::PeerToPeer;
    use peerchat_shared::sync::{EnvelopeCheck, SyncEngine, SyncInput, SyncLimits};
    use peerchat_shared::time::UnixMillis;
    use std::cell::Cell;
    use std::rc::Rc;

    /// The relay's verifier, counting the envelopes it checks.
    struct Counting(Verifier, Rc<Cell<usize>>);
    impl EnvelopeCheck for Counting {
        fn check(&self, envelope: Envelope) -> Result<VerifiedEnvelope, EnvelopeRejected> {
            self.1.set(self.1.get() + 1);
            envelope.verify(&self.0)
        }
        fn check_all(
            &self,
            envelopes: Vec<Envelope>,
        ) -> Result<Vec<VerifiedEnvelope>, BatchRejection> {
            self.1.set(self.1.get() + envelopes.len());
            Envelope::verify_all(envelopes, &self.0)
        }
    }

    let checked = Rc::new(Cell::new(0));
    let relay = SecretKey::from_seed([1; 32])
        .public_key()
        .verifier()
        .unwrap();
    let mut engine = SyncEngine::new(Counting(relay, checked.clone()), SyncLimits::default(), 3);
    let now = UnixMillis(1_000_000);
    let general = ChannelName::new("general").unwrap();
    engine.handle(
        now,
        SyncInput::Join {
            channel: general.clone(),
            ids: Vec::new(),
        },
    );
    let peer = 1;
    engine.handle(
        now,
        SyncInput::PeerUp {
            peer,
            channels: vec![general.clone()],
            archive: false,
        },
    );
    let envelopes = history(20);
    let push = |envelopes: Vec<Envelope>| SyncInput::Frame {
        peer,
        frame: PeerToPeer::Envelopes {
            channel: general.clone(),
            envelopes,
        },
    };
    engine.handle(now, push(envelopes.clone()));
    assert_eq!(checked.get(), 20);
    assert_eq!(engine.held(&general), 20);
    for _ in 0..10 {
        engine.handle(now, push(envelopes.clone()));
    }
    assert_eq!(checked.get(), 20, "replays are dropped unchecked");
}

#[test]
fn a_peer_gets_a_bounded_number_of_reconciliation_answers() {
    use peerchat_shared::channel::ChannelName;
    use peerchat_shared::identity::SecretKey;
    use peerchat_shared::peer::PeerToPeer;
    use peerchat_shared::sync::{SyncEngine, SyncInput, SyncLimits, SyncOutput};
    use peerchat_shared::time::UnixMillis;

    let relay = || {
        SecretKey::from_seed([1; 32])
            .public_key()
            .verifier()
            .unwrap()
    };
    let now = UnixMillis(1_000_000);
    let general = ChannelName::new("general").unwrap();
    let ids: Vec<MessageId> = history(50).iter().map(|envelope| envelope.id).collect();
    let start = |seed: u64| {
        let mut engine = SyncEngine::new(relay(), SyncLimits::default(), seed);
        engine.handle(
            now,
            SyncInput::Join {
                channel: general.clone(),
                ids: ids.clone(),
            },
        );
        engine.handle(
            now,
            SyncInput::PeerUp {
                peer: 1,
                channels: vec![general.clone()],
                archive: false,
            },
        );
        engine
    };
    // A genuine first step of a reconciliation, which the flooding peer then repeats.
    let mut flooder = start(1);
    let query = std::iter::from_fn(|| flooder.poll_output())
        .find_map(|output| match output {
            SyncOutput::Send {
                frame: frame @ PeerToPeer::ReconcileQuery { .. },
                ..
            } => Some(frame),
            _ => None,
        })
        .expect("a reconciliation starts when a peer comes up");

    let mut victim = start(2);
    while victim.poll_output().is_some() {}
    let burst = SyncLimits::default().reconcile_step_burst as usize;
    let answers = |victim: &mut SyncEngine<_>, at: UnixMillis, count: usize| {
        for _ in 0..count {
            victim.handle(
                at,
                SyncInput::Frame {
                    peer: 1,
                    frame: query.clone(),
                },
            );
        }
        std::iter::from_fn(|| victim.poll_output())
            .filter(|output| {
                matches!(
                    output,
                    SyncOutput::Send {
                        frame: PeerToPeer::ReconcileReply { .. },
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(answers(&mut victim, now, burst + 100), burst);
    // One second later the steady rate allows a few more.
    let rate = SyncLimits::default().reconcile_steps_per_second as usize;
    assert_eq!(
        answers(&mut victim, now.saturating_add_millis(1_000), 100),
        rate
    );
}

/// An id no relay minted, at `time`.
fn forged_id(time: peerchat_shared::time::UnixMillis, n: u64) -> MessageId {
    let mut bytes = [0; 16];
    bytes[..6].copy_from_slice(&time.0.to_be_bytes()[2..]);
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    MessageId::from_bytes(bytes)
}

#[test]
fn claimed_ids_stamped_in_the_future_are_ignored() {
    use peerchat_shared::identity::SecretKey;
    use peerchat_shared::peer::{PeerToPeer, MAX_HAVE_IDS};
    use peerchat_shared::sync::{SyncEngine, SyncInput, SyncLimits};
    use peerchat_shared::time::UnixMillis;

    let relay = SecretKey::from_seed([1; 32])
        .public_key()
        .verifier()
        .unwrap();
    let mut engine = SyncEngine::new(relay, SyncLimits::default(), 3);
    let general = simulation::general();
    let now = UnixMillis(1_900_000_000_000);
    engine.handle(
        now,
        SyncInput::Join {
            channel: general.clone(),
            ids: vec![],
        },
    );
    engine.handle(
        now,
        SyncInput::PeerUp {
            peer: 1,
            channels: vec![general.clone()],
            archive: false,
        },
    );
    let claim = |time: UnixMillis| SyncInput::Frame {
        peer: 1,
        frame: PeerToPeer::Have {
            channel: general.clone(),
            ids: (0..MAX_HAVE_IDS as u64)
                .map(|n| forged_id(time, n))
                .collect(),
        },
    };
    let year = 365 * 24 * 3_600 * 1_000;
    engine.handle(now, claim(now.saturating_add_millis(year)));
    assert_eq!(engine.missing(&general), 0, "a year ahead is refused");
    // A minute ahead is within the tolerance for clocks that disagree.
    engine.handle(now, claim(now.saturating_add_millis(60_000)));
    assert_eq!(engine.missing(&general), MAX_HAVE_IDS);
    // This member's clock is a year behind the relay's (it said so at login): the relay's
    // recent ids are not in the future.
    let relay_time = now.saturating_add_millis(year);
    engine.handle(now, SyncInput::RelayClock { relay_time });
    engine.handle(now, claim(relay_time));
    assert_eq!(engine.missing(&general), 2 * MAX_HAVE_IDS);
}

#[test]
fn a_peer_claiming_ids_it_never_sends_loses_its_claims_and_the_real_history_still_arrives() {
    use peerchat_shared::peer::{PeerToPeer, MAX_HAVE_IDS};
    use peerchat_shared::sync::SyncLimits;
    use peerchat_shared::time::UnixMillis;
    use simulation::InTransit;

    let envelopes = history(200);
    let (honest, newcomer, liar) = (0, 1, 2);
    let mut sim = Simulation::new(3, 1, 17, &envelopes);
    sim.links = vec![
        BTreeSet::from([newcomer]),
        BTreeSet::from([honest, liar]),
        BTreeSet::from([newcomer]),
    ];
    sim.seed_history(honest, ids_of(&envelopes));
    sim.peers[liar].malicious = true;
    sim.bring_online(liar);
    sim.bring_online(newcomer);
    sim.drain_outputs();
    // More plausible ids (after the real history, before now) than a channel tracks as missing.
    let after_history = envelopes.last().unwrap().id.timestamp().0 + 1;
    let claims = SyncLimits::default().max_missing / MAX_HAVE_IDS + 10;
    let flood = (0..claims).map(|frame| InTransit {
        from: liar,
        to: newcomer,
        frame: PeerToPeer::Have {
            channel: simulation::general(),
            ids: (0..MAX_HAVE_IDS as u64)
                .map(|n| forged_id(UnixMillis(after_history + frame as u64), n))
                .collect(),
        },
    });
    sim.in_transit
        .entry(sim.tick + 1)
        .or_default()
        .extend(flood);
    sim.step();
    let tracked = sim.peers[newcomer].engine.missing(&simulation::general());
    assert!(
        tracked <= SyncLimits::default().claims_per_peer,
        "one peer's claims are capped: {tracked} tracked"
    );
    // The forged ids, newer than any real one, are asked for first.
    for _ in 0..20 {
        sim.step();
    }
    sim.bring_online(honest);
    sim.drain_outputs();
    assert!(
        sim.run_until_converged(&ids_of(&envelopes), 400).is_some(),
        "the newcomer got {} of 200 real messages",
        sim.peers[newcomer].held.len()
    );
    // Requests out to the liar expire, three in a row, within seconds.
    let general = simulation::general();
    for _ in 0..400 {
        if sim.peers[newcomer].engine.missing(&general) == 0 {
            break;
        }
        sim.step();
    }
    assert_eq!(
        sim.peers[newcomer].engine.missing(&simulation::general()),
        0,
        "the claims only the liar made are forgotten"
    );
}
