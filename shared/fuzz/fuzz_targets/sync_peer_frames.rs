//! Fuzz target: any sequence of peer frames from one linked peer (one JSON text per line), with
//! time passing between them, never makes the sync engine panic, and it never tracks more
//! missing ids than one peer's claims may fill.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerchat_shared::channel::ChannelName;
use peerchat_shared::codec::decode_peer_frame;
use peerchat_shared::identity::SecretKey;
use peerchat_shared::sync::{SyncEngine, SyncInput, SyncLimits, SyncOutput};
use peerchat_shared::time::UnixMillis;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let relay = SecretKey::from_seed([1; 32]).public_key();
    let limits = SyncLimits::default();
    let mut engine = SyncEngine::new(relay.verifier().unwrap(), limits.clone(), 7);
    let general = ChannelName::new("general").unwrap();
    let mut now = UnixMillis(1_900_000_000_000);
    let channel = general.clone();
    engine.handle(now, SyncInput::Join { channel, ids: vec![] });
    let channels = vec![general.clone()];
    engine.handle(now, SyncInput::PeerUp { peer: 1, channels, archive: false });
    for line in text.lines() {
        if let Ok(frame) = decode_peer_frame(line) {
            engine.handle(now, SyncInput::Frame { peer: 1, frame });
        }
        now = now.saturating_add_millis(250);
        engine.handle(now, SyncInput::Timeout);
        while let Some(output) = engine.poll_output() {
            if let SyncOutput::Load { peer, channel, .. } = output {
                let envelopes = vec![];
                engine.handle(now, SyncInput::Loaded { peer, channel, envelopes });
            }
        }
        assert!(engine.missing(&general) <= limits.claims_per_peer);
    }
});
