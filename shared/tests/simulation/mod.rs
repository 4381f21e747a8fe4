//! A deterministic network of sync engines: many peers on a seeded network with delay, loss,
//! partitions and churn, each with an in-memory set of held ids standing in for its store.
//! Envelopes are real (signed by a relay key) and every peer really verifies what it receives;
//! a shared cache spares re-verifying an identical envelope already verified once. Used by
//! `tests/sync_simulation.rs` and by the `sync_benchmark` example.
#![allow(dead_code)]

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

pub fn general() -> ChannelName {
    ChannelName::new("general").unwrap()
}

/// Real verification, done once per distinct envelope for the whole simulation.
#[derive(Clone, Debug)]
pub struct CachedCheck {
    pub relay: Verifier,
    pub verified: Rc<RefCell<HashMap<MessageId, VerifiedEnvelope>>>,
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
pub fn history(count: usize) -> Vec<Envelope> {
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

pub struct SimPeer {
    pub engine: SyncEngine<CachedCheck>,
    pub held: BTreeSet<MessageId>,
    pub online: bool,
    /// Envelopes received (duplicates included), for transfers per peer.
    pub received: usize,
    /// Peers this one dropped, and why.
    pub dropped: Vec<(PeerId, String)>,
    /// Answers every `want` with altered envelopes.
    pub malicious: bool,
}

pub struct InTransit {
    pub from: usize,
    pub to: usize,
    pub frame: PeerToPeer,
}

/// The network: each peer connects to `degree` random others; frames take 1 or 2 ticks and are
/// lost with probability `loss`; a partition drops everything between its two sides.
pub struct Simulation {
    pub peers: Vec<SimPeer>,
    pub links: Vec<BTreeSet<usize>>,
    pub envelopes: HashMap<MessageId, Envelope>,
    /// Frames by the tick they arrive.
    pub in_transit: BTreeMap<u64, Vec<InTransit>>,
    pub random: SeededRandom,
    pub tick: u64,
    pub loss_percent: u64,
    /// Every frame takes exactly one tick (no reordering).
    pub fixed_delay: bool,
    pub partition: Option<BTreeSet<usize>>,
    pub check: CachedCheck,
}

impl Simulation {
    pub fn new(peer_count: usize, degree: usize, seed: u64, envelopes: &[Envelope]) -> Self {
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
            in_transit: BTreeMap::new(),
            random,
            tick: 0,
            loss_percent: 0,
            fixed_delay: false,
            partition: None,
            check,
        }
    }

    pub fn now(&self) -> UnixMillis {
        UnixMillis(1_900_000_000_000 + self.tick * TICK_MILLIS)
    }

    /// Gives `peer` these envelopes before it comes online.
    pub fn seed_history(&mut self, peer: usize, ids: impl IntoIterator<Item = MessageId>) {
        self.peers[peer].held.extend(ids);
    }

    pub fn bring_online(&mut self, peer: usize) {
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

    pub fn connect(&mut self, a: usize, b: usize) {
        let now = self.now();
        for (me, them) in [(a, b), (b, a)] {
            self.peers[me].engine.handle(
                now,
                SyncInput::PeerUp {
                    peer: them as PeerId,
                    channels: vec![general()],
                    archive: false,
                },
            );
        }
    }

    pub fn take_offline(&mut self, peer: usize) {
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
    pub fn post(&mut self, peer: usize, envelope: &Envelope) {
        let now = self.now();
        let verified = self.check.check(envelope.clone()).unwrap();
        self.peers[peer].held.insert(envelope.id);
        self.peers[peer].engine.handle(
            now,
            SyncInput::Local {
                envelope: Box::new(verified),
                spread: true,
            },
        );
    }

    pub fn cut(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|side| side.contains(&a) != side.contains(&b))
    }

    /// Carries out every peer's outputs until none are left.
    pub fn drain_outputs(&mut self) {
        for index in 0..self.peers.len() {
            self.drain_outputs_of(index);
        }
    }

    /// Carries out one peer's outputs (which only ever feed that peer's engine again).
    fn drain_outputs_of(&mut self, index: usize) {
        while let Some(output) = self.peers[index].engine.poll_output() {
            self.carry_out(index, output);
        }
    }

    pub fn carry_out(&mut self, peer: usize, output: SyncOutput) {
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
                    self.in_transit
                        .entry(self.tick + delay)
                        .or_default()
                        .push(InTransit {
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
    pub fn step(&mut self) {
        self.tick += 1;
        let now = self.now();
        let due = self.in_transit.remove(&self.tick).unwrap_or_default();
        for InTransit { from, to, frame } in due {
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
            self.drain_outputs_of(to);
        }
        for index in 0..self.peers.len() {
            let due = self.peers[index]
                .engine
                .poll_timeout()
                .is_some_and(|at| at <= now);
            if self.peers[index].online && due {
                self.peers[index].engine.handle(now, SyncInput::Timeout);
                self.drain_outputs_of(index);
            }
        }
    }

    /// Ticks until every online honest peer holds `ids`, or `limit` ticks pass; returns the
    /// ticks taken.
    pub fn run_until_converged(&mut self, ids: &BTreeSet<MessageId>, limit: u64) -> Option<u64> {
        let start = self.tick;
        while self.tick - start < limit {
            if self.converged(ids) {
                return Some(self.tick - start);
            }
            self.step();
        }
        self.converged(ids).then_some(self.tick - start)
    }

    pub fn converged(&self, ids: &BTreeSet<MessageId>) -> bool {
        let honest = || {
            self.peers
                .iter()
                .filter(|peer| peer.online && !peer.malicious)
        };
        // Counting first spares the set comparisons while most peers are still filling up.
        honest().all(|peer| peer.held.len() >= ids.len())
            && honest().all(|peer| ids.is_subset(&peer.held))
    }

    pub fn holding(&self, id: MessageId) -> usize {
        self.peers
            .iter()
            .filter(|p| p.online && p.held.contains(&id))
            .count()
    }
}

pub fn ids_of(envelopes: &[Envelope]) -> BTreeSet<MessageId> {
    envelopes.iter().map(|e| e.id).collect()
}
