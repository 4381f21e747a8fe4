//! The transfer engine between one member fetching an attachment and peers serving it, over an
//! in-memory network: several sources at once, tampered chunks, silent peers, resuming, and the
//! bounds a greedy peer meets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use peerchat_shared::chunk_tree::{leaf_hash, ChunkTree, Hash, CHUNK_BYTES};
use peerchat_shared::sync::PeerId;
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::{
    AttachmentKey, ChunkFrame, TransferEngine, TransferInput, TransferLimits, TransferOutput,
};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const START: UnixMillis = UnixMillis(1_000_000);
/// How the member fetching is known to every source.
const FETCHER: PeerId = 1;

/// A file and its tree.
struct File {
    bytes: Vec<u8>,
    tree: ChunkTree,
}

impl File {
    fn new(size: usize) -> Self {
        let bytes: Vec<u8> = (0..size).map(|index| (index * 31 % 253) as u8).collect();
        let tree = ChunkTree::from_leaves(bytes.chunks(CHUNK_BYTES).map(leaf_hash).collect());
        Self { bytes, tree }
    }

    fn key(&self) -> AttachmentKey {
        AttachmentKey {
            root: self.tree.root(),
            size: self.bytes.len() as u64,
        }
    }

    fn chunk(&self, index: u64) -> (Vec<u8>, Vec<Hash>) {
        let start = index as usize * CHUNK_BYTES;
        let end = (start + CHUNK_BYTES).min(self.bytes.len());
        (
            self.bytes[start..end].to_vec(),
            self.tree.proof(index as usize),
        )
    }
}

/// How a source behaves.
#[derive(Clone, PartialEq, Eq)]
enum Source {
    Honest,
    /// Holds only these chunks.
    Partial(BTreeSet<u64>),
    /// Flips a bit in every chunk it serves.
    Tampering,
    /// Never answers.
    Silent,
}

/// One member fetching `file` from sources (peer ids 10, 11, …), each running its own engine.
struct Network<'a> {
    file: &'a File,
    now: UnixMillis,
    /// What the fetcher asks for (the file's own key unless a test says otherwise).
    key: AttachmentKey,
    fetcher: TransferEngine,
    sources: BTreeMap<PeerId, (Source, TransferEngine)>,
    /// Frames in flight: (to, from, frame); the fetcher is `FETCHER`.
    wire: VecDeque<(PeerId, PeerId, ChunkFrame)>,
    stored: BTreeMap<u64, (Vec<u8>, PeerId)>,
    disconnected: BTreeSet<PeerId>,
    complete: bool,
    unavailable: bool,
    wanted: Vec<u64>,
}

impl<'a> Network<'a> {
    fn new(file: &'a File, sources: &[Source]) -> Self {
        let mut network = Self {
            file,
            key: file.key(),
            now: START,
            fetcher: TransferEngine::new(TransferLimits::default()),
            sources: BTreeMap::new(),
            wire: VecDeque::new(),
            stored: BTreeMap::new(),
            disconnected: BTreeSet::new(),
            complete: false,
            unavailable: false,
            wanted: Vec::new(),
        };
        for (offset, source) in sources.iter().enumerate() {
            let mut engine = TransferEngine::new(TransferLimits::default());
            engine.handle(
                START,
                TransferInput::PeerUp {
                    peer: FETCHER,
                    relayed: false,
                },
            );
            // A partial source's store answers for the chunks it lacks.
            let holding = TransferInput::Holding {
                key: file.key(),
                announce: false,
            };
            engine.handle(START, holding);
            network
                .sources
                .insert(10 + offset as PeerId, (source.clone(), engine));
        }
        network
    }

    fn link_all(&mut self) {
        let peers: Vec<PeerId> = self.sources.keys().copied().collect();
        for peer in peers {
            self.fetcher.handle(
                self.now,
                TransferInput::PeerUp {
                    peer,
                    relayed: false,
                },
            );
        }
    }

    fn fetch(&mut self) {
        self.fetch_holding(Vec::new());
    }

    fn fetch_holding(&mut self, held: Vec<u64>) {
        let input = TransferInput::Fetch {
            key: self.key,
            held,
        };
        self.fetcher.handle(self.now, input);
    }

    fn drain_fetcher(&mut self) {
        while let Some(output) = self.fetcher.poll_output() {
            match output {
                TransferOutput::Send { peer, frame } => {
                    if let ChunkFrame::Want { chunks, .. } = &frame {
                        self.wanted.extend(chunks);
                    }
                    self.wire.push_back((peer, FETCHER, frame));
                }
                TransferOutput::StoreChunk {
                    index, data, from, ..
                } => {
                    self.stored.insert(index, (data, from));
                }
                TransferOutput::Complete { .. } => self.complete = true,
                TransferOutput::Unavailable { .. } => self.unavailable = true,
                TransferOutput::Declined { .. } => panic!("one fetch is never declined"),
                TransferOutput::Disconnect { peer, .. } => {
                    self.disconnected.insert(peer);
                    self.sources.remove(&peer);
                }
                TransferOutput::ReadChunk { .. } => panic!("the fetcher serves nothing here"),
            }
        }
    }

    fn drain_source(&mut self, id: PeerId) {
        let file = self.file;
        let Some((behaviour, engine)) = self.sources.get_mut(&id) else {
            return;
        };
        let mut reads = Vec::new();
        while let Some(output) = engine.poll_output() {
            match output {
                TransferOutput::ReadChunk { peer, key, index } => reads.push((peer, key, index)),
                TransferOutput::Send { peer, frame } => {
                    if *behaviour != Source::Silent {
                        self.wire.push_back((peer, id, frame));
                    }
                }
                other => panic!("a source only serves: {other:?}"),
            }
        }
        for (peer, key, index) in reads {
            let holds = key == file.key()
                && match &*behaviour {
                    Source::Partial(chunks) => chunks.contains(&index),
                    _ => true,
                };
            let chunk = holds.then(|| {
                let (mut data, proof) = file.chunk(index);
                if *behaviour == Source::Tampering {
                    data[0] ^= 1;
                }
                (data, proof)
            });
            let input = TransferInput::ChunkRead {
                peer,
                key,
                index,
                chunk,
            };
            engine.handle(self.now, input);
        }
        while let Some(output) = engine.poll_output() {
            if let TransferOutput::Send { peer, frame } = output {
                if *behaviour != Source::Silent {
                    self.wire.push_back((peer, id, frame));
                }
            }
        }
    }

    /// Delivers frames until the wire is empty, then lets time pass to the next time-out;
    /// stops when complete or after `rounds` time-outs.
    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.drain_fetcher();
            while let Some((to, from, frame)) = self.wire.pop_front() {
                if to == FETCHER {
                    self.fetcher
                        .handle(self.now, TransferInput::Frame { peer: from, frame });
                    self.drain_fetcher();
                } else if let Some((_, engine)) = self.sources.get_mut(&to) {
                    engine.handle(self.now, TransferInput::Frame { peer: from, frame });
                    self.drain_source(to);
                }
            }
            if self.complete {
                return;
            }
            let Some(next) = self.fetcher.poll_timeout() else {
                return;
            };
            self.now = next;
            self.fetcher.handle(self.now, TransferInput::Timeout);
        }
    }

    fn assembled(&self) -> Vec<u8> {
        self.stored
            .values()
            .flat_map(|(data, _)| data.iter().copied())
            .collect()
    }

    fn sources_used(&self) -> BTreeSet<PeerId> {
        self.stored.values().map(|(_, from)| *from).collect()
    }
}

#[test]
fn a_file_comes_from_several_peers_at_once_and_matches_its_digest() {
    let file = File::new(40 * CHUNK_BYTES + 123);
    let mut network = Network::new(&file, &[Source::Honest, Source::Honest, Source::Honest]);
    network.link_all();
    network.fetch();
    network.run(10);
    assert!(network.complete);
    assert_eq!(
        Sha256::digest(network.assembled()),
        Sha256::digest(&file.bytes)
    );
    assert_eq!(
        network.sources_used().len(),
        3,
        "every holder served a share"
    );
    assert_eq!(
        network.fetcher.progress(&file.key()),
        None,
        "nothing is kept once complete"
    );
}

#[test]
fn a_peer_that_serves_a_tampered_chunk_is_disconnected_and_the_file_still_completes() {
    let file = File::new(20 * CHUNK_BYTES);
    let mut network = Network::new(&file, &[Source::Honest, Source::Tampering]);
    network.link_all();
    network.fetch();
    network.run(10);
    assert_eq!(network.disconnected, BTreeSet::from([11]));
    assert!(network.complete);
    assert_eq!(network.assembled(), file.bytes);
    assert_eq!(network.sources_used(), BTreeSet::from([10]));
}

#[test]
fn a_peer_that_never_answers_is_given_up_and_the_others_serve() {
    let file = File::new(30 * CHUNK_BYTES);
    let mut network = Network::new(&file, &[Source::Silent, Source::Honest]);
    network.link_all();
    network.fetch();
    network.run(20);
    assert!(network.complete);
    assert_eq!(network.assembled(), file.bytes);
    assert!(
        network.now > START,
        "the silent peer's requests had to expire"
    );
}

#[test]
fn chunks_already_stored_are_never_asked_for_again() {
    let file = File::new(16 * CHUNK_BYTES);
    let mut network = Network::new(&file, &[Source::Honest]);
    network.link_all();
    // As after a reload: the first half was stored before.
    let held: Vec<u64> = (0..8).collect();
    network.fetch_holding(held.clone());
    network.run(10);
    assert!(network.complete);
    assert!(network.wanted.iter().all(|index| !held.contains(index)));
    assert_eq!(
        network.stored.keys().copied().collect::<Vec<_>>(),
        (8..16).collect::<Vec<_>>()
    );
}

#[test]
fn with_nobody_to_ask_the_attachment_is_unavailable_until_a_peer_comes() {
    let file = File::new(3 * CHUNK_BYTES);
    let mut network = Network::new(&file, &[Source::Honest]);
    network.fetch();
    network.drain_fetcher();
    assert!(network.unavailable);
    assert!(network.wire.is_empty());
    network.link_all();
    network.run(5);
    assert!(network.complete);
}

#[test]
fn a_peer_that_lacked_the_attachment_is_asked_again_once_it_announces_holding_it() {
    let file = File::new(3 * CHUNK_BYTES);
    let mut network = Network::new(&file, &[Source::Partial(BTreeSet::new())]);
    network.link_all();
    network.fetch();
    network.run(1);
    assert!(network.unavailable && !network.complete);
    network.sources.get_mut(&10).unwrap().0 = Source::Honest;
    let key = network.key;
    network
        .wire
        .push_back((FETCHER, 10, ChunkFrame::Have { key }));
    network.run(5);
    assert!(network.complete);
    assert_eq!(network.assembled(), file.bytes);
}

#[test]
fn completing_an_attachment_announces_it_to_every_linked_peer() {
    let file = File::new(2 * CHUNK_BYTES);
    let mut network = Network::new(&file, &[Source::Honest, Source::Honest]);
    network.link_all();
    network.fetch();
    network.drain_fetcher();
    let mut announced = Vec::new();
    while let Some((to, from, frame)) = network.wire.pop_front() {
        if to == FETCHER {
            network
                .fetcher
                .handle(network.now, TransferInput::Frame { peer: from, frame });
            while let Some(output) = network.fetcher.poll_output() {
                if let TransferOutput::Send {
                    peer,
                    frame: ChunkFrame::Have { key },
                } = output
                {
                    assert_eq!(key, network.key);
                    announced.push(peer);
                }
            }
        } else if let Some((_, engine)) = network.sources.get_mut(&to) {
            engine.handle(network.now, TransferInput::Frame { peer: from, frame });
            network.drain_source(to);
        }
    }
    announced.sort_unstable();
    assert_eq!(announced, [10, 11]);
}

#[test]
fn a_peer_that_asks_for_chunks_in_a_loop_is_served_within_its_bounds() {
    let file = File::new(64 * CHUNK_BYTES);
    let limits = TransferLimits::default();
    let mut source = TransferEngine::new(limits.clone());
    let greedy = 7;
    source.handle(
        START,
        TransferInput::PeerUp {
            peer: greedy,
            relayed: false,
        },
    );
    source.handle(
        START,
        TransferInput::Holding {
            key: file.key(),
            announce: false,
        },
    );
    let want = |round: u64| TransferInput::Frame {
        peer: greedy,
        frame: ChunkFrame::Want {
            key: file.key(),
            chunks: (0..16).map(|offset| (round * 16 + offset) % 64).collect(),
        },
    };
    // Reads not answered yet: at most `serving_per_peer` at once.
    for round in 0..100 {
        source.handle(START, want(round));
    }
    let reads = std::iter::from_fn(|| source.poll_output()).count();
    assert_eq!(reads, limits.serving_per_peer);

    // Reads answered at once: each chunk once while its request stands, and at most the
    // burst in all.
    let mut served = 0;
    for round in 0..1_000 {
        source.handle(START, want(round));
        let outputs: Vec<_> = std::iter::from_fn(|| source.poll_output()).collect();
        for output in outputs {
            if let TransferOutput::ReadChunk { peer, key, index } = output {
                served += 1;
                let input = TransferInput::ChunkRead {
                    peer,
                    key,
                    index,
                    chunk: Some(file.chunk(index)),
                };
                source.handle(START, input);
            }
        }
        while source.poll_output().is_some() {}
    }
    assert!(served <= 64, "{served} chunks served in one instant");
}

#[test]
fn oversized_requests_and_floods_of_unasked_chunks_cost_the_peer_its_link() {
    let file = File::new(CHUNK_BYTES);
    let mut engine = TransferEngine::new(TransferLimits::default());
    engine.handle(
        START,
        TransferInput::PeerUp {
            peer: 5,
            relayed: false,
        },
    );
    let too_many = ChunkFrame::Want {
        key: file.key(),
        chunks: (0..17).collect(),
    };
    engine.handle(
        START,
        TransferInput::Frame {
            peer: 5,
            frame: too_many,
        },
    );
    assert!(matches!(
        engine.poll_output(),
        Some(TransferOutput::Disconnect { peer: 5, .. })
    ));

    engine.handle(
        START,
        TransferInput::PeerUp {
            peer: 6,
            relayed: false,
        },
    );
    let (data, proof) = file.chunk(0);
    let mut disconnected = false;
    for _ in 0..=TransferLimits::default().unasked_chunks_per_peer {
        let unasked = ChunkFrame::Chunk {
            key: file.key(),
            index: 0,
            proof: proof.clone(),
            data: data.clone(),
        };
        engine.handle(
            START,
            TransferInput::Frame {
                peer: 6,
                frame: unasked,
            },
        );
        while let Some(output) = engine.poll_output() {
            disconnected |= matches!(output, TransferOutput::Disconnect { peer: 6, .. });
        }
    }
    assert!(disconnected);
}

#[test]
fn a_description_with_someone_elses_root_and_another_size_costs_no_honest_holder_its_link() {
    let file = File::new(5 * CHUNK_BYTES + 10);
    let mut network = Network::new(&file, &[Source::Honest, Source::Honest]);
    network.key = AttachmentKey {
        root: file.key().root,
        size: file.key().size + 1,
    };
    network.link_all();
    network.fetch();
    network.run(5);
    assert!(network.disconnected.is_empty());
    assert!(!network.complete);
    assert!(network.unavailable, "nobody holds that attachment");
}

#[test]
fn members_still_fetching_serve_each_other_the_chunks_they_hold() {
    let file = File::new(10 * CHUNK_BYTES);
    let first = Source::Partial(BTreeSet::from([0, 9]));
    let second = Source::Partial((1..9).collect());
    let mut network = Network::new(&file, &[first, second]);
    network.link_all();
    network.fetch();
    network.run(10);
    assert!(network.complete);
    assert_eq!(network.assembled(), file.bytes);
    assert!(network.disconnected.is_empty());
}

#[test]
fn a_peer_left_alone_after_failing_is_asked_again_later() {
    let file = File::new(4 * CHUNK_BYTES);
    let mut network = Network::new(&file, &[Source::Silent]);
    network.link_all();
    network.fetch();
    network.run(4);
    assert!(
        network.unavailable,
        "the only holder failed three rounds and is left alone"
    );
    let wanted_before = network.wanted.len();
    let retry = network.fetcher.poll_timeout().expect("a time to ask again");
    assert!(retry >= START.saturating_add_millis(TransferLimits::default().give_up_millis));
    network.now = retry;
    network.fetcher.handle(retry, TransferInput::Timeout);
    network.drain_fetcher();
    assert!(network.wanted.len() > wanted_before, "asked again");
}

#[test]
fn late_answers_to_requests_asked_again_or_cancelled_are_no_offence() {
    let file = File::new(2 * CHUNK_BYTES);
    let mut engine = TransferEngine::new(TransferLimits::default());
    engine.handle(
        START,
        TransferInput::PeerUp {
            peer: 5,
            relayed: false,
        },
    );
    for _ in 0..=TransferLimits::default().unasked_chunks_per_peer {
        let fetch = TransferInput::Fetch {
            key: file.key(),
            held: vec![],
        };
        engine.handle(START, fetch);
        engine.handle(START, TransferInput::Cancel { key: file.key() });
        let (data, proof) = file.chunk(0);
        let late = ChunkFrame::Chunk {
            key: file.key(),
            index: 0,
            proof,
            data,
        };
        engine.handle(
            START,
            TransferInput::Frame {
                peer: 5,
                frame: late,
            },
        );
    }
    let outputs: Vec<_> = std::iter::from_fn(|| engine.poll_output()).collect();
    assert!(
        !outputs
            .iter()
            .any(|output| matches!(output, TransferOutput::Disconnect { .. })),
        "{outputs:?}"
    );
}

#[test]
fn a_peer_announcing_it_holds_the_file_again_and_again_cannot_stall_a_fetch_another_can_finish() {
    let file = File::new(24 * CHUNK_BYTES);
    let mut network = Network::new(&file, &[Source::Silent, Source::Honest]);
    network.link_all();
    network.fetch();
    let liar = 10;
    for _ in 0..6 {
        network.run(1);
        let have = TransferInput::Frame {
            peer: liar,
            frame: ChunkFrame::Have { key: file.key() },
        };
        network.fetcher.handle(network.now, have);
    }
    network.run(1);
    assert!(network.complete, "the honest peer finished the file");
    assert_eq!(network.assembled(), file.bytes);
    assert_eq!(network.sources_used(), BTreeSet::from([11]));
}

/// The outputs of `engine` after `input`.
fn outputs_after(
    engine: &mut TransferEngine,
    now: UnixMillis,
    input: TransferInput,
) -> Vec<TransferOutput> {
    engine.handle(now, input);
    std::iter::from_fn(|| engine.poll_output()).collect()
}

fn want(peer: PeerId, key: AttachmentKey, chunks: Vec<u64>) -> TransferInput {
    TransferInput::Frame {
        peer,
        frame: ChunkFrame::Want { key, chunks },
    }
}

#[test]
fn a_request_for_what_this_member_does_not_hold_is_answered_missing_without_a_read() {
    let file = File::new(4 * CHUNK_BYTES);
    let key = file.key();
    let mut engine = TransferEngine::new(TransferLimits::default());
    engine.handle(
        START,
        TransferInput::PeerUp {
            peer: 5,
            relayed: false,
        },
    );
    let missing = |chunks: Vec<u64>| TransferOutput::Send {
        peer: 5,
        frame: ChunkFrame::Missing { key, chunks },
    };
    assert_eq!(
        outputs_after(&mut engine, START, want(5, key, vec![0, 1])),
        [missing(vec![0, 1])]
    );

    let holding = TransferInput::Holding {
        key,
        announce: false,
    };
    assert!(outputs_after(&mut engine, START, holding).is_empty());
    assert_eq!(
        outputs_after(&mut engine, START, want(5, key, vec![2])),
        [TransferOutput::ReadChunk {
            peer: 5,
            key,
            index: 2
        }]
    );

    engine.handle(START, TransferInput::Dropped { key });
    assert_eq!(
        outputs_after(&mut engine, START, want(5, key, vec![3])),
        [missing(vec![3])]
    );

    // Chunks of a fetch in progress are served as they come.
    let fetch = TransferInput::Fetch { key, held: vec![1] };
    engine.handle(START, fetch);
    while engine.poll_output().is_some() {}
    let outputs = outputs_after(&mut engine, START, want(5, key, vec![1, 2]));
    assert!(outputs.contains(&missing(vec![2])), "{outputs:?}");
    assert!(outputs.contains(&TransferOutput::ReadChunk {
        peer: 5,
        key,
        index: 1
    }));
}

#[test]
fn a_chunk_served_to_a_peer_is_not_served_to_it_again_while_its_request_stands() {
    let file = File::new(CHUNK_BYTES);
    let key = file.key();
    let limits = TransferLimits::default();
    let mut engine = TransferEngine::new(limits.clone());
    engine.handle(
        START,
        TransferInput::PeerUp {
            peer: 5,
            relayed: false,
        },
    );
    engine.handle(
        START,
        TransferInput::Holding {
            key,
            announce: false,
        },
    );
    let reads = |outputs: Vec<TransferOutput>| {
        outputs
            .iter()
            .filter(|output| matches!(output, TransferOutput::ReadChunk { .. }))
            .count()
    };
    assert_eq!(
        reads(outputs_after(&mut engine, START, want(5, key, vec![0]))),
        1
    );
    let read = TransferInput::ChunkRead {
        peer: 5,
        key,
        index: 0,
        chunk: Some(file.chunk(0)),
    };
    engine.handle(START, read);
    while engine.poll_output().is_some() {}
    assert_eq!(
        reads(outputs_after(&mut engine, START, want(5, key, vec![0; 16]))),
        0
    );
    let later = START.saturating_add_millis(limits.request_timeout_millis + 1);
    assert_eq!(
        reads(outputs_after(&mut engine, later, want(5, key, vec![0]))),
        1
    );
}

#[test]
fn reads_for_all_peers_together_stay_within_the_serving_limit() {
    let file = File::new(64 * CHUNK_BYTES);
    let key = file.key();
    let limits = TransferLimits::default();
    let mut engine = TransferEngine::new(limits.clone());
    engine.handle(
        START,
        TransferInput::Holding {
            key,
            announce: false,
        },
    );
    let mut reads = 0;
    for peer in 0..10 {
        engine.handle(
            START,
            TransferInput::PeerUp {
                peer,
                relayed: false,
            },
        );
        let chunks = (0..16).map(|offset| (peer * 16 + offset) % 64).collect();
        reads += outputs_after(&mut engine, START, want(peer, key, chunks))
            .iter()
            .filter(|output| matches!(output, TransferOutput::ReadChunk { .. }))
            .count();
    }
    assert_eq!(reads, limits.serving_at_once);
}

#[test]
fn fetches_beyond_the_limit_are_declined() {
    let limits = TransferLimits::default();
    let mut engine = TransferEngine::new(limits.clone());
    let mut declined = Vec::new();
    for seed in 0..=limits.fetches_at_once {
        let key = AttachmentKey {
            root: [seed as u8; 32],
            size: 0,
        };
        let fetch = TransferInput::Fetch { key, held: vec![] };
        declined.extend(
            outputs_after(&mut engine, START, fetch)
                .into_iter()
                .filter(|output| matches!(output, TransferOutput::Declined { .. })),
        );
    }
    let last = AttachmentKey {
        root: [limits.fetches_at_once as u8; 32],
        size: 0,
    };
    assert_eq!(declined, [TransferOutput::Declined { key: last }]);
}

#[test]
fn unasked_chunks_are_forgiven_over_time() {
    let file = File::new(CHUNK_BYTES);
    let limits = TransferLimits::default();
    let mut engine = TransferEngine::new(limits.clone());
    engine.handle(
        START,
        TransferInput::PeerUp {
            peer: 6,
            relayed: false,
        },
    );
    let (data, proof) = file.chunk(0);
    let send_unasked = |engine: &mut TransferEngine, now: UnixMillis, count: u32| {
        let mut disconnected = false;
        for _ in 0..count {
            let unasked = ChunkFrame::Chunk {
                key: file.key(),
                index: 0,
                proof: proof.clone(),
                data: data.clone(),
            };
            let frame = TransferInput::Frame {
                peer: 6,
                frame: unasked,
            };
            disconnected |= outputs_after(engine, now, frame)
                .iter()
                .any(|output| matches!(output, TransferOutput::Disconnect { .. }));
        }
        disconnected
    };
    let limit = limits.unasked_chunks_per_peer;
    assert!(!send_unasked(&mut engine, START, limit));
    let a_minute_later = START.saturating_add_millis(60_000);
    assert!(!send_unasked(&mut engine, a_minute_later, limit));
    assert!(send_unasked(&mut engine, a_minute_later, 1));
}
