//! The sync engine in a deterministic simulation: many peers on a seeded network with delay,
//! loss, partitions and churn, each with an in-memory set of held ids standing in for its store.
//! Envelopes are real (signed by a relay key) and every peer really verifies what it receives;
//! a shared cache spares re-verifying an identical envelope already verified once.

//! Native only: it is a workload (seconds of CPU), not a check of wasm32 behaviour, which the
//! client-session and signature tests cover in the browser.
#![cfg(not(target_arch = "wasm32"))]

use peerchat_shared::channel::ChannelName;
use peerchat_shared::identity::{SecretKey, Verifier};
use peerchat_shared::ids::{MessageId, MessageIdGenerator};
use peerchat_shared::message::{
    ClientNonce, Draft, Envelope, EnvelopeRejected, MessageBody, VerifiedEnvelope,
};
use peerchat_shared::peer::PeerToPeer;
use peerchat_shared::random::SeededRandom;
use peerchat_shared::sync::{EnvelopeCheck, PeerId, SyncEngine, SyncInput, SyncLimits, SyncOutput};
use peerchat_shared::time::UnixMillis;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

const TICK_MILLIS: u64 = 50;

fn general() -> ChannelName {
    ChannelName::new("general").unwrap()
}

/// Real verification, done once per distinct envelope for the whole simulation.
#[derive(Clone)]
struct CachedCheck {
    relay: Verifier,
    verified: Rc<RefCell<HashMap<MessageId, VerifiedEnvelope>>>,
}

impl EnvelopeCheck for CachedCheck {
    fn check(&self, envelope: Envelope) -> Result<VerifiedEnvelope, EnvelopeRejected> {
        if let Some(known) = self.verified.borrow().get(&envelope.id) {
            if known.envelope() == &envelope {
                return Ok(known.clone());
            }
        }
        let verified = envelope.verify(&self.relay)?;
        self.verified
            .borrow_mut()
            .insert(verified.envelope().id, verified.clone());
        Ok(verified)
    }
}

/// `count` envelopes in #general, stamped by the relay with seed `[1; 32]`, one per 10 ms.
fn history(count: usize) -> Vec<Envelope> {
    let relay = SecretKey::from_seed([1; 32]);
    let authors: Vec<SecretKey> = (0..4).map(|n| SecretKey::from_seed([10 + n; 32])).collect();
    let mut ids = MessageIdGenerator::default();
    (0..count)
        .map(|n| {
            let author = &authors[n % authors.len()];
            let draft = Draft::sign(
                author,
                &relay.public_key(),
                general(),
                ClientNonce((n as u128).to_be_bytes()),
                MessageBody::text(format!("message {n}")),
            );
            let verified = draft
                .verify(
                    &relay.public_key(),
                    &author.public_key().verifier().unwrap(),
                )
                .unwrap();
            let time = UnixMillis(1_800_000_000_000 + 10 * n as u64);
            verified.seal(ids.next(time, n as u128).unwrap(), &relay)
        })
        .collect()
}

struct SimPeer {
    engine: SyncEngine<CachedCheck>,
    held: BTreeSet<MessageId>,
    online: bool,
    /// Envelopes received (duplicates included), for transfers per peer.
    received: usize,
    /// Peers this one dropped, and why.
    dropped: Vec<(PeerId, String)>,
    /// Answers every `want` with altered envelopes.
    malicious: bool,
}

struct InTransit {
    due_tick: u64,
    from: usize,
    to: usize,
    frame: PeerToPeer,
}

/// The network: each peer connects to `degree` random others; frames take 1 or 2 ticks and are
/// lost with probability `loss`; a partition drops everything between its two sides.
struct Simulation {
    peers: Vec<SimPeer>,
    links: Vec<BTreeSet<usize>>,
    envelopes: HashMap<MessageId, Envelope>,
    in_transit: Vec<InTransit>,
    random: SeededRandom,
    tick: u64,
    loss_percent: u64,
    /// Every frame takes exactly one tick (no reordering).
    fixed_delay: bool,
    partition: Option<BTreeSet<usize>>,
    check: CachedCheck,
}

impl Simulation {
    fn new(peer_count: usize, degree: usize, seed: u64, envelopes: &[Envelope]) -> Self {
        let relay = SecretKey::from_seed([1; 32])
            .public_key()
            .verifier()
            .unwrap();
        let check = CachedCheck {
            relay,
            verified: Rc::default(),
        };
        let mut random = SeededRandom::new(seed);
        let mut links = vec![BTreeSet::new(); peer_count];
        for peer in 0..peer_count {
            while links[peer].len() < degree.min(peer_count - 1) {
                let other = random.below(peer_count);
                if other != peer {
                    links[peer].insert(other);
                    links[other].insert(peer);
                }
            }
        }
        let peers = (0..peer_count)
            .map(|index| SimPeer {
                engine: SyncEngine::new(check.clone(), SyncLimits::default(), index as u64 + seed),
                held: BTreeSet::new(),
                online: false,
                received: 0,
                dropped: Vec::new(),
                malicious: false,
            })
            .collect();
        Self {
            peers,
            links,
            envelopes: envelopes.iter().map(|e| (e.id, e.clone())).collect(),
            in_transit: Vec::new(),
            random,
            tick: 0,
            loss_percent: 0,
            fixed_delay: false,
            partition: None,
            check,
        }
    }

    fn now(&self) -> UnixMillis {
        UnixMillis(1_900_000_000_000 + self.tick * TICK_MILLIS)
    }

    /// Gives `peer` these envelopes before it comes online.
    fn seed_history(&mut self, peer: usize, ids: impl IntoIterator<Item = MessageId>) {
        self.peers[peer].held.extend(ids);
    }

    fn bring_online(&mut self, peer: usize) {
        let now = self.now();
        let ids: Vec<MessageId> = self.peers[peer].held.iter().copied().collect();
        let check = self.check.clone();
        let seed = self.random.next_u64();
        let state = &mut self.peers[peer];
        state.engine = SyncEngine::new(check, SyncLimits::default(), seed);
        state.online = true;
        state.engine.handle(
            now,
            SyncInput::Join {
                channel: general(),
                ids,
            },
        );
        let neighbours: Vec<usize> = self.links[peer]
            .iter()
            .copied()
            .filter(|other| self.peers[*other].online)
            .collect();
        for other in neighbours {
            self.connect(peer, other);
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        let now = self.now();
        for (me, them) in [(a, b), (b, a)] {
            self.peers[me].engine.handle(
                now,
                SyncInput::PeerUp {
                    peer: them as PeerId,
                    channels: vec![general()],
                },
            );
        }
    }

    fn take_offline(&mut self, peer: usize) {
        let now = self.now();
        self.peers[peer].online = false;
        let neighbours: Vec<usize> = self.links[peer].iter().copied().collect();
        for other in neighbours {
            self.peers[other].engine.handle(
                now,
                SyncInput::PeerDown {
                    peer: peer as PeerId,
                },
            );
        }
    }

    /// A message posted at `peer` (it came live from the relay).
    fn post(&mut self, peer: usize, envelope: &Envelope) {
        let now = self.now();
        let verified = self.check.check(envelope.clone()).unwrap();
        self.peers[peer].held.insert(envelope.id);
        self.peers[peer].engine.handle(
            now,
            SyncInput::Local {
                envelope: Box::new(verified),
            },
        );
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|side| side.contains(&a) != side.contains(&b))
    }

    /// Carries out every peer's outputs until none are left.
    fn drain_outputs(&mut self) {
        for index in 0..self.peers.len() {
            while let Some(output) = self.peers[index].engine.poll_output() {
                self.carry_out(index, output);
            }
        }
    }

    fn carry_out(&mut self, peer: usize, output: SyncOutput) {
        match output {
            SyncOutput::Send { peer: to, frame } => {
                let to = to as usize;
                let lost = self.random.below(100) < self.loss_percent as usize;
                if !lost && !self.cut(peer, to) {
                    let delay = if self.fixed_delay {
                        1
                    } else {
                        1 + self.random.below(2) as u64
                    };
                    self.in_transit.push(InTransit {
                        due_tick: self.tick + delay,
                        from: peer,
                        to,
                        frame,
                    });
                }
            }
            SyncOutput::Load {
                peer: to,
                channel,
                ids,
            } => {
                let mut envelopes: Vec<Envelope> = ids
                    .iter()
                    .filter(|id| self.peers[peer].held.contains(id))
                    .map(|id| self.envelopes[id].clone())
                    .collect();
                if self.peers[peer].malicious {
                    for envelope in &mut envelopes {
                        envelope.body = MessageBody::text("rewritten by a malicious peer");
                    }
                }
                let now = self.now();
                self.peers[peer].engine.handle(
                    now,
                    SyncInput::Loaded {
                        peer: to,
                        channel,
                        envelopes,
                    },
                );
            }
            SyncOutput::Store { envelopes, .. } => {
                let state = &mut self.peers[peer];
                for envelope in envelopes {
                    assert!(state.held.insert(envelope.envelope().id), "stored twice");
                }
            }
            SyncOutput::Disconnect {
                peer: other,
                reason,
            } => {
                self.peers[peer].dropped.push((other, reason));
            }
            SyncOutput::State { .. } => {}
        }
    }

    /// One tick: deliver what is due, fire due timers, carry out everything that follows.
    fn step(&mut self) {
        self.tick += 1;
        let now = self.now();
        let (due, later): (Vec<InTransit>, Vec<InTransit>) = std::mem::take(&mut self.in_transit)
            .into_iter()
            .partition(|frame| frame.due_tick <= self.tick);
        self.in_transit = later;
        for InTransit {
            from, to, frame, ..
        } in due
        {
            if !self.peers[to].online || !self.peers[from].online {
                continue;
            }
            if let PeerToPeer::Envelopes { envelopes, .. } = &frame {
                self.peers[to].received += envelopes.len();
            }
            self.peers[to].engine.handle(
                now,
                SyncInput::Frame {
                    peer: from as PeerId,
                    frame,
                },
            );
            self.drain_outputs();
        }
        for index in 0..self.peers.len() {
            let due = self.peers[index]
                .engine
                .poll_timeout()
                .is_some_and(|at| at <= now);
            if self.peers[index].online && due {
                self.peers[index].engine.handle(now, SyncInput::Timeout);
            }
        }
        self.drain_outputs();
    }

    /// Ticks until every online honest peer holds `ids`, or `limit` ticks pass; returns the
    /// ticks taken.
    fn run_until_converged(&mut self, ids: &BTreeSet<MessageId>, limit: u64) -> Option<u64> {
        let start = self.tick;
        while self.tick - start < limit {
            if self.converged(ids) {
                return Some(self.tick - start);
            }
            self.step();
        }
        self.converged(ids).then_some(self.tick - start)
    }

    fn converged(&self, ids: &BTreeSet<MessageId>) -> bool {
        self.peers
            .iter()
            .filter(|peer| peer.online && !peer.malicious)
            .all(|peer| ids.is_subset(&peer.held))
    }

    fn holding(&self, id: MessageId) -> usize {
        self.peers
            .iter()
            .filter(|p| p.online && p.held.contains(&id))
            .count()
    }
}

fn ids_of(envelopes: &[Envelope]) -> BTreeSet<MessageId> {
    envelopes.iter().map(|e| e.id).collect()
}

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
    eprintln!(
        "received {:?}",
        sim.peers
            .iter()
            .map(|p| (p.received, p.held.len(), p.dropped.len()))
            .collect::<Vec<_>>()
    );
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
