//! Who links with whom: offering to members who were there first, places and archive places,
//! answering or declining offers, and replacing links that bring nothing.

use super::{
    Link, LinkState, MeshOutput, PeerMesh, SignalPayload, Transport, LINK_OPEN_TIMEOUT_MILLIS,
    LINK_ROTATION_MILLIS, MAX_ARCHIVE_LINKS, MAX_LINKS, MAX_OFFERED_LINKS, ROTATED_OUT_MILLIS,
};
use crate::frames::{PeerAddress, SessionId};
use crate::identity::PublicKey;
use crate::sync::SyncInput;
use crate::time::UnixMillis;
use crate::transfer::TransferInput;

impl PeerMesh {
    pub(super) fn is_other_member(&self, member: &PeerAddress) -> bool {
        self.login
            .as_ref()
            .is_some_and(|login| member.key != login.me && member.session != login.session)
    }

    /// Whether a link to `session` would take a place a member should have: this member is no
    /// archive itself and already holds [`MAX_ARCHIVE_LINKS`] links to archives.
    pub(super) fn archive_places_taken(&self, session: SessionId) -> bool {
        let me_archive = self.login.as_ref().is_some_and(|login| login.archive);
        let archive_links = self.links.values().filter(|link| link.archive).count();
        !me_archive && self.is_archive(session) && archive_links >= MAX_ARCHIVE_LINKS
    }

    pub(super) fn has_link_to_key(&self, key: &PublicKey) -> bool {
        self.links.values().any(|link| link.key == *key)
    }

    /// Offers links to random listed members until [`MAX_OFFERED_LINKS`] are offered.
    pub(super) fn offer_links(&mut self, now: UnixMillis) {
        loop {
            let offered = self.links.values().filter(|link| link.offered).count();
            if offered >= MAX_OFFERED_LINKS || self.links.len() >= MAX_LINKS {
                return;
            }
            let listed: Vec<SessionId> = self.listed.iter().copied().collect();
            if !self.offer_to_one_of(now, listed) {
                return;
            }
        }
    }

    /// Offers a link to a random one of `sessions` this member may link with, members before
    /// archives; false when there is none.
    pub(super) fn offer_to_one_of(&mut self, now: UnixMillis, sessions: Vec<SessionId>) -> bool {
        let candidates = self.link_candidates(now, sessions);
        // Members first; archives only when no member is left to offer to.
        let members: Vec<_> = candidates.iter().filter(|(.., archive)| !archive).collect();
        let pool = if members.is_empty() {
            candidates.iter().collect()
        } else {
            members
        };
        if pool.is_empty() {
            return false;
        }
        let (session, key, _) = *pool[self.random.below(pool.len())];
        self.begin_link(now, session, key, true);
        let ice_servers = self.ice_servers();
        self.outputs.push_back(MeshOutput::Offer {
            session,
            ice_servers,
        });
        true
    }

    /// Those of `sessions` this member may offer a link to now, with their keys and whether
    /// they are archives.
    pub(super) fn link_candidates(
        &self,
        now: UnixMillis,
        sessions: Vec<SessionId>,
    ) -> Vec<(SessionId, PublicKey, bool)> {
        sessions
            .into_iter()
            .filter(|session| {
                !self.links.contains_key(session)
                    && !self.declined.contains(session)
                    && !self.is_rotated_out(*session, now)
                    && !self.archive_places_taken(*session)
            })
            .filter_map(|session| {
                let (key, _) = self.presence_of(session)?;
                Some((session, key, self.is_archive(session)))
            })
            .filter(|(_, key, _)| !self.is_refused(key) && !self.has_link_to_key(key))
            .collect()
    }

    /// With every place taken, replaces the link that brought nothing new for longest (at
    /// least [`LINK_ROTATION_MILLIS`]) with a link to another member of this member's channels.
    pub(super) fn rotate_links(&mut self, now: UnixMillis) {
        if now < self.next_rotation {
            return;
        }
        self.next_rotation = now.saturating_add_millis(LINK_ROTATION_MILLIS);
        if self.links.len() < MAX_LINKS {
            return;
        }
        let stale = self
            .links
            .iter()
            .filter(|(_, link)| link.transport().is_some())
            .filter(|(_, link)| link.useful_at.saturating_add_millis(LINK_ROTATION_MILLIS) <= now)
            .min_by_key(|(session, link)| (link.useful_at, **session))
            .map(|(session, link)| (*session, link.key));
        let Some((session, key)) = stale else {
            return;
        };
        let others: Vec<SessionId> = self
            .present
            .values()
            .flat_map(|sessions| sessions.iter())
            .filter(|(other, (other_key, _))| **other != session && *other_key != key)
            .map(|(other, _)| *other)
            .collect();
        if self.link_candidates(now, others.clone()).is_empty() {
            return;
        }
        // `busy` tells the other side, whose link through the relay would otherwise stay.
        self.signal(session, &SignalPayload::Busy);
        self.remove_link(now, session);
        self.rotated_out.retain(|_, until| *until > now);
        let until = now.saturating_add_millis(ROTATED_OUT_MILLIS);
        self.rotated_out.insert(session, until);
        self.stats.links_rotated += 1;
        self.offer_to_one_of(now, others);
    }

    pub(super) fn begin_link(
        &mut self,
        now: UnixMillis,
        session: SessionId,
        key: PublicKey,
        offered: bool,
    ) {
        let deadline = now.saturating_add_millis(LINK_OPEN_TIMEOUT_MILLIS);
        let peer = self.next_peer;
        self.next_peer += 1;
        self.sessions_by_peer.insert(peer, session);
        let archive = self.is_archive(session);
        self.links.insert(
            session,
            Link {
                peer,
                key,
                archive,
                offered,
                state: if offered {
                    LinkState::Offering { deadline }
                } else {
                    LinkState::Answering { deadline }
                },
                useful_at: now,
            },
        );
    }

    /// Whether a link `from` asks for has a place.
    pub(super) fn may_answer(&self, from: &PeerAddress, now: UnixMillis) -> bool {
        self.links.len() < MAX_LINKS
            && !self.has_link_to_key(&from.key)
            && !self.archive_places_taken(from.session)
            && !self.is_rotated_out(from.session, now)
    }

    pub(super) fn is_rotated_out(&self, session: SessionId, now: UnixMillis) -> bool {
        self.rotated_out
            .get(&session)
            .is_some_and(|until| *until > now)
    }

    pub(super) fn on_link_open(&mut self, now: UnixMillis, session: SessionId) {
        let Some(link) = self.links.get_mut(&session) else {
            return;
        };
        let was_up = link.transport().is_some();
        link.state = LinkState::Open;
        if !was_up {
            self.peer_up(now, session);
        }
    }

    pub(super) fn peer_up(&mut self, now: UnixMillis, session: SessionId) {
        let Some((peer, archive, relayed)) = self
            .links
            .get(&session)
            .map(|l| (l.peer, l.archive, l.transport() == Some(Transport::Relay)))
        else {
            return;
        };
        let channels = self.shared_channels(session);
        self.sync(
            now,
            SyncInput::PeerUp {
                peer,
                channels,
                archive,
            },
        );
        self.transfer_input(now, TransferInput::PeerUp { peer, relayed });
    }

    pub(super) fn on_link_down(&mut self, now: UnixMillis, session: SessionId) {
        match self.links.get(&session).map(|link| link.state) {
            Some(LinkState::Offering { .. } | LinkState::Answering { .. }) => {
                // The other side may not know of the link yet (no offer went out).
                self.signal(session, &SignalPayload::Relay);
                self.fall_back_to_relay(now, session)
            }
            Some(LinkState::Open) => {
                self.remove_link(now, session);
                self.offer_links(now);
            }
            Some(LinkState::Relayed) | None => {}
        }
    }
}
