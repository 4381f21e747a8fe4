//! How a small attachment spreads through a channel, in a deterministic simulation of the
//! transfer engines of every member over a sparse random mesh (each member linked to about 8
//! others, as the mesh links them): the author posts a 2 MiB photo, every member receives the
//! message at once and fetches the photo from its links, and each member that completes it
//! announces `chunk_have` to its links. A frame takes one step (50 ms) to arrive.
//!
//! It measures, for 50 and 1,000 members, the hops (a member that got its chunks from members
//! of hop h is at hop h + 1; the author is hop 0) and steps until 80% and all members hold the
//! photo, and the bytes each member sends. The 50-member run is a test; `cargo xtask bench
//! gossip` runs both in a release build and prints them (docs/benchmarks.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]
// A thousand engines moving megabytes: native only (the engine's wasm build runs the other
// transfer tests).
#![cfg(not(target_arch = "wasm32"))]

use peerchat_shared::chunk_tree::{leaf_hash, ChunkTree, Hash, CHUNK_BYTES};
use peerchat_shared::random::SeededRandom;
use peerchat_shared::sync::PeerId;
use peerchat_shared::time::UnixMillis;
use peerchat_shared::transfer::{
    AttachmentKey, ChunkFrame, TransferEngine, TransferInput, TransferLimits, TransferOutput,
};
use std::collections::BTreeSet;

const STEP_MILLIS: u64 = 50;
/// Links each member makes; others link to it too, so about twice this many in all.
const LINKS_MADE: usize = 4;
const MAX_LINKS: usize = 8;

/// The photo every member serves from: what it holds is the same bytes.
struct Photo {
    bytes: Vec<u8>,
    tree: ChunkTree,
}

impl Photo {
    fn chunk(&self, index: u64) -> (Vec<u8>, Vec<Hash>) {
        let start = index as usize * CHUNK_BYTES;
        let end = (start + CHUNK_BYTES).min(self.bytes.len());
        (
            self.bytes[start..end].to_vec(),
            self.tree.proof(index as usize),
        )
    }
}

struct Member {
    engine: TransferEngine,
    /// The chunks it holds (their bytes are the photo's).
    chunks: BTreeSet<u64>,
    /// The hops of the members each chunk came from.
    source_hops: Vec<usize>,
    /// Hop and step at which it held the whole photo.
    done: Option<(usize, usize)>,
    chunk_bytes_sent: usize,
}

struct Outcome {
    members: usize,
    hops_to_80: usize,
    hops_to_all: usize,
    steps_to_80: usize,
    steps_to_all: usize,
    mean_sent: f64,
    max_sent: f64,
}

/// A random mesh: each member links to [`LINKS_MADE`] others that have room, none above
/// [`MAX_LINKS`].
fn mesh(count: usize, random: &mut SeededRandom) -> Vec<BTreeSet<usize>> {
    let mut links = vec![BTreeSet::new(); count];
    for member in 0..count {
        let mut tries = 0;
        while links[member].len() < LINKS_MADE && tries < 100 {
            tries += 1;
            let other = random.below(count);
            if other != member && links[other].len() < MAX_LINKS && links[member].insert(other) {
                links[other].insert(member);
            }
        }
    }
    links
}

fn spread(count: usize, seed: u64) -> Outcome {
    let size = 2 * 1024 * 1024;
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let tree = ChunkTree::from_leaves(bytes.chunks(CHUNK_BYTES).map(leaf_hash).collect());
    let key = AttachmentKey {
        root: tree.root(),
        size: size as u64,
    };
    let chunk_count = tree.chunk_count();
    let photo = Photo { bytes, tree };
    let mut random = SeededRandom::new(seed);
    let links = mesh(count, &mut random);
    let mut now = UnixMillis(1_000_000);
    let mut members: Vec<Member> = (0..count)
        .map(|_| Member {
            engine: TransferEngine::new(TransferLimits::default()),
            chunks: BTreeSet::new(),
            source_hops: Vec::new(),
            done: None,
            chunk_bytes_sent: 0,
        })
        .collect();
    for (member, linked) in links.iter().enumerate() {
        for other in linked {
            let peer = *other as PeerId;
            members[member].engine.handle(
                now,
                TransferInput::PeerUp {
                    peer,
                    relayed: false,
                },
            );
        }
    }
    let author = &mut members[0];
    author.chunks = (0..chunk_count as u64).collect();
    author.done = Some((0, 0));
    author.engine.handle(
        now,
        TransferInput::Holding {
            key,
            announce: true,
        },
    );
    for member in members.iter_mut().skip(1) {
        let fetch = TransferInput::Fetch { key, held: vec![] };
        member.engine.handle(now, fetch);
    }
    // (to, from, frame), delivered at the next step.
    let mut wire: Vec<(usize, usize, ChunkFrame)> = Vec::new();
    let mut step = 0;
    while members.iter().any(|member| member.done.is_none()) {
        assert!(step < 10_000, "the photo never reached everyone");
        for member in 0..count {
            drain(&mut members, &photo, member, now, step, &mut wire);
        }
        step += 1;
        now = now.saturating_add_millis(STEP_MILLIS);
        for (to, from, frame) in std::mem::take(&mut wire) {
            let peer = from as PeerId;
            members[to]
                .engine
                .handle(now, TransferInput::Frame { peer, frame });
        }
        for member in &mut members {
            if member.engine.poll_timeout().is_some_and(|at| at <= now) {
                member.engine.handle(now, TransferInput::Timeout);
            }
        }
        assert!(members
            .iter()
            .skip(1)
            .all(|m| m.chunks.len() <= chunk_count));
    }
    let mut finished: Vec<(usize, usize)> = members.iter().filter_map(|m| m.done).collect();
    let at = |share: f64, order: &mut Vec<(usize, usize)>| {
        let index = ((share * count as f64).ceil() as usize).clamp(1, count) - 1;
        order[index]
    };
    finished.sort_by_key(|(hop, _)| *hop);
    let hops_to_80 = at(0.8, &mut finished).0;
    let hops_to_all = at(1.0, &mut finished).0;
    finished.sort_by_key(|(_, step)| *step);
    let steps_to_80 = at(0.8, &mut finished).1;
    let steps_to_all = at(1.0, &mut finished).1;
    let sent: Vec<f64> = members
        .iter()
        .map(|member| member.chunk_bytes_sent as f64 / size as f64)
        .collect();
    Outcome {
        members: count,
        hops_to_80,
        hops_to_all,
        steps_to_80,
        steps_to_all,
        mean_sent: sent.iter().sum::<f64>() / count as f64,
        max_sent: sent.iter().copied().fold(0.0, f64::max),
    }
}

/// Carries out one member's outputs: frames go on the wire, chunks asked of it are read from
/// what it holds, chunks it receives are kept.
fn drain(
    members: &mut [Member],
    photo: &Photo,
    at: usize,
    now: UnixMillis,
    step: usize,
    wire: &mut Vec<(usize, usize, ChunkFrame)>,
) {
    loop {
        let Some(output) = members[at].engine.poll_output() else {
            return;
        };
        match output {
            TransferOutput::Send { peer, frame } => {
                if let ChunkFrame::Chunk { data, .. } = &frame {
                    members[at].chunk_bytes_sent += data.len();
                }
                wire.push((peer as usize, at, frame));
            }
            TransferOutput::ReadChunk { peer, key, index } => {
                let chunk = members[at]
                    .chunks
                    .contains(&index)
                    .then(|| photo.chunk(index));
                let read = TransferInput::ChunkRead {
                    peer,
                    key,
                    index,
                    chunk,
                };
                members[at].engine.handle(now, read);
            }
            TransferOutput::StoreChunk { index, from, .. } => {
                let from_hop = members[from as usize].done.map_or(0, |(hop, _)| hop);
                let member = &mut members[at];
                assert!(member.chunks.insert(index), "a chunk came twice");
                member.source_hops.push(from_hop);
            }
            TransferOutput::Complete { .. } => {
                let member = &mut members[at];
                let hop = 1 + member.source_hops.iter().copied().max().unwrap_or(0);
                member.done = Some((hop, step));
            }
            TransferOutput::Unavailable { .. } => {}
            TransferOutput::Declined { .. } => panic!("one fetch each is never declined"),
            TransferOutput::Disconnect { reason, .. } => panic!("nobody misbehaves: {reason}"),
        }
    }
}

#[allow(
    clippy::print_stdout,
    reason = "the figures are what `bench gossip` shows"
)]
fn report(outcome: &Outcome) {
    println!(
        "{} members: 80% after {} hops ({} ms), all after {} hops ({} ms); \
         each member sent {:.2} times the photo on average, at most {:.2}",
        outcome.members,
        outcome.hops_to_80,
        outcome.steps_to_80 as u64 * STEP_MILLIS,
        outcome.hops_to_all,
        outcome.steps_to_all as u64 * STEP_MILLIS,
        outcome.mean_sent,
        outcome.max_sent,
    );
}

#[test]
fn a_small_photo_reaches_every_member_of_a_fifty_member_channel_in_a_few_hops() {
    let outcome = spread(50, 7);
    report(&outcome);
    assert!(outcome.hops_to_80 <= 4 && outcome.hops_to_all <= 5);
    assert!(outcome.mean_sent <= 1.0 && outcome.max_sent <= 5.0);
}

#[test]
#[ignore = "benchmark: cargo xtask bench gossip"]
fn a_small_photo_reaches_every_member_of_a_thousand_member_channel_with_little_sent_by_each() {
    let outcome = spread(1_000, 11);
    report(&outcome);
    assert!(outcome.hops_to_80 <= 7 && outcome.hops_to_all <= 11);
    assert!(outcome.steps_to_80 as u64 * STEP_MILLIS <= 3_500);
    assert!(outcome.mean_sent <= 1.0 && outcome.max_sent <= 8.0);
}
