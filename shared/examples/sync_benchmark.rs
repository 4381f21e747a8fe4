//! `cargo xtask bench sync`: the sync engine of 1,000 peers in the deterministic simulation,
//! with 10,000 messages, 5% loss and churn, reporting rounds and transfers for
//! docs/benchmarks.md (about 10 minutes of CPU). A tick is the simulation's time step; a frame takes one or two ticks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[path = "../tests/simulation/mod.rs"]
mod simulation;

use peerchat_shared::ids::MessageId;
use peerchat_shared::random::SeededRandom;
use simulation::{history, ids_of, Simulation};
use std::collections::BTreeMap;
use std::time::Instant;

const DEGREE: usize = 8;

fn total_received(sim: &Simulation) -> usize {
    sim.peers.iter().map(|peer| peer.received).sum()
}

fn main() {
    // `sync_benchmark [peers] [messages]`, 1,000 and 10,000 by default.
    let mut arguments = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let peers = arguments.next().unwrap_or(1_000);
    let messages = arguments.next().unwrap_or(10_000);
    run(peers, messages);
}

#[allow(clippy::print_stdout, reason = "the figures are this program's output")]
#[allow(clippy::disallowed_methods, reason = "the benchmark times itself")]
fn run(peers: usize, messages: usize) {
    let started = Instant::now();
    let envelopes = history(messages + 1);
    let (backlog, fresh) = envelopes.split_at(messages);
    let mut sim = Simulation::new(peers, DEGREE, 2026, &envelopes);
    sim.loss_percent = 5;

    // History scattered: each message starts at one random peer.
    let mut random = SeededRandom::new(7);
    let mut origins: BTreeMap<usize, Vec<MessageId>> = BTreeMap::new();
    for envelope in backlog {
        origins
            .entry(random.below(peers))
            .or_default()
            .push(envelope.id);
    }
    for (peer, ids) in origins {
        sim.seed_history(peer, ids);
    }
    for peer in 0..peers {
        sim.bring_online(peer);
    }
    sim.drain_outputs();
    let all = ids_of(backlog);
    let start = sim.tick;
    while !sim.converged(&all) && sim.tick - start < 20_000 {
        if (sim.tick - start) % 20 == 0 {
            // Churn: one peer leaves and another comes back every 20 ticks.
            let leaving = random.below(peers);
            sim.take_offline(leaving);
            let returning = random.below(peers);
            if !sim.peers[returning].online {
                sim.bring_online(returning);
                sim.drain_outputs();
            }
        }
        sim.step();
    }
    for peer in 0..peers {
        if !sim.peers[peer].online {
            sim.bring_online(peer);
        }
    }
    sim.drain_outputs();
    let converged = sim.run_until_converged(&all, 20_000);
    println!(
        "backlog: {peers} peers, {messages} messages scattered, 5% loss, churn: converged after {} ticks ({converged:?} more after churn stopped); {:.1} envelopes received per peer per message held",
        sim.tick - start,
        total_received(&sim) as f64 / (peers * messages) as f64
    );

    let before = total_received(&sim);
    sim.post(0, &fresh[0]);
    sim.drain_outputs();
    let start = sim.tick;
    let (mut to_80, mut to_100) = (None, None);
    while to_100.is_none() && sim.tick - start < 2_000 {
        sim.step();
        let holding = sim.holding(fresh[0].id);
        if to_80.is_none() && holding * 5 >= peers * 4 {
            to_80 = Some(sim.tick - start);
        }
        if holding == peers {
            to_100 = Some(sim.tick - start);
        }
    }
    println!(
        "new message: 80% of peers after {to_80:?} ticks, all after {to_100:?} ticks, {:.2} transfers per peer",
        (total_received(&sim) - before) as f64 / peers as f64
    );
    println!("simulated in {:.1} s", started.elapsed().as_secs_f64());
}
