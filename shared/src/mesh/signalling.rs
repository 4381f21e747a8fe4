//! Signalling through the relay: one offer and one answer per link, each with its ICE
//! candidates, and the `busy` and `relay` answers.

use super::{Link, LinkState, MeshOutput, PeerMesh, SignalPayload};
use crate::client::ClientInput;
use crate::codec::encode;
use crate::frames::{IceServer, PeerAddress, SessionId};
use crate::time::UnixMillis;

impl PeerMesh {
    pub(super) fn ice_servers(&self) -> Vec<IceServer> {
        self.login
            .as_ref()
            .map(|login| login.ice_servers.clone())
            .unwrap_or_default()
    }

    pub(super) fn signal(&mut self, to: SessionId, payload: &SignalPayload) {
        self.outputs
            .push_back(MeshOutput::ToRelay(ClientInput::Signal {
                to,
                data: encode(payload),
            }));
    }

    pub(super) fn on_signal(&mut self, now: UnixMillis, from: PeerAddress, data: &str) {
        let Ok(payload) = serde_json::from_str::<SignalPayload>(data) else {
            return;
        };
        if self.key_of(from.session) != Some(from.key) || self.is_refused(&from.key) {
            return;
        }
        match payload {
            SignalPayload::Offer { sdp } => self.on_offer(now, from, sdp),
            SignalPayload::Answer { sdp } => {
                if let Some(Link {
                    state: LinkState::Offering { .. },
                    ..
                }) = self.links.get(&from.session)
                {
                    if has_ice_candidate(&sdp) {
                        self.outputs.push_back(MeshOutput::Accept {
                            session: from.session,
                            answer: sdp,
                        });
                    } else {
                        self.stats.links_without_candidates += 1;
                        self.fall_back_to_relay(now, from.session);
                    }
                }
            }
            SignalPayload::Relay => self.on_relay_asked(now, from),
            SignalPayload::Busy => {
                if matches!(
                    self.links.get(&from.session),
                    Some(Link {
                        state: LinkState::Offering { .. } | LinkState::Relayed,
                        ..
                    })
                ) {
                    self.declined.insert(from.session);
                    self.remove_link(now, from.session);
                    self.offer_links(now);
                }
            }
        }
    }

    /// The other side cannot make a data channel: a link being made takes the relay path, and
    /// one this side does not hold yet is begun on it, within the usual places.
    pub(super) fn on_relay_asked(&mut self, now: UnixMillis, from: PeerAddress) {
        match self.links.get(&from.session).map(|link| link.state) {
            Some(LinkState::Offering { .. } | LinkState::Answering { .. }) => {
                self.fall_back_to_relay(now, from.session)
            }
            Some(LinkState::Open | LinkState::Relayed) => {}
            None => {
                if !self.may_answer(&from, now) {
                    return self.signal(from.session, &SignalPayload::Busy);
                }
                self.begin_link(now, from.session, from.key, false);
                self.fall_back_to_relay(now, from.session);
            }
        }
    }

    pub(super) fn on_offer(&mut self, now: UnixMillis, from: PeerAddress, sdp: String) {
        let my_session = self.login.as_ref().map(|login| login.session);
        match self.links.get(&from.session).map(|link| link.state) {
            // Offers crossed: the lower session's offer stands.
            Some(LinkState::Offering { .. }) if my_session < Some(from.session) => return,
            Some(_) => self.remove_link(now, from.session),
            None => {}
        }
        if !self.may_answer(&from, now) {
            return self.signal(from.session, &SignalPayload::Busy);
        }
        self.begin_link(now, from.session, from.key, false);
        if !has_ice_candidate(&sdp) {
            self.stats.links_without_candidates += 1;
            return self.fall_back_to_relay(now, from.session);
        }
        let ice_servers = self.ice_servers();
        self.outputs.push_back(MeshOutput::Answer {
            session: from.session,
            ice_servers,
            offer: sdp,
        });
    }

    /// Signals the description. When it holds no ICE candidate (this side gathered none, so
    /// no data channel can open), this side takes the relay path at once, and the other,
    /// seeing a description without candidates, does the same: each side has a link it
    /// signalled for before it accepts a forwarded frame.
    pub(super) fn on_local_description(
        &mut self,
        now: UnixMillis,
        session: SessionId,
        sdp: String,
    ) {
        let offering = match self.links.get(&session).map(|link| link.state) {
            Some(LinkState::Offering { .. }) => true,
            Some(LinkState::Answering { .. }) => false,
            _ => return,
        };
        let usable = has_ice_candidate(&sdp);
        let payload = if offering {
            SignalPayload::Offer { sdp }
        } else {
            SignalPayload::Answer { sdp }
        };
        self.signal(session, &payload);
        if !usable {
            self.stats.links_without_candidates += 1;
            self.fall_back_to_relay(now, session);
        }
    }
}

/// Whether an SDP description lists at least one ICE candidate.
fn has_ice_candidate(sdp: &str) -> bool {
    sdp.lines()
        .any(|line| line.trim_start().starts_with("a=candidate:"))
}
