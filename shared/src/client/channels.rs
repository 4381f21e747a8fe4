//! Once online: channels, presence and profiles, and the frames that need a login.

use super::{ChannelPeer, ClientEvent, ClientOutput, ClientSession, MemberView, PeerNews};
use crate::channel::ChannelName;
use crate::frames::{ClientToRelay, ErrorCode, MemberPresence, PresenceChange, RelayToClient};
use crate::identity::PublicKey;
use crate::limits::MAX_CHANNELS_PER_SESSION;
use crate::membership::{DisplayName, Profile};
use crate::time::UnixMillis;
use std::collections::BTreeMap;

impl ClientSession {
    /// Frames that mean the same whenever they come; anything else out of turn is ignored.
    pub(super) fn on_frame_online_only(&mut self, frame: RelayToClient) {
        if let RelayToClient::Error { code, message, .. } = frame {
            self.event(ClientEvent::Problem {
                code: Some(code),
                message,
            });
        }
    }

    pub(super) fn on_frame_online(&mut self, now: UnixMillis, frame: RelayToClient) {
        match frame {
            RelayToClient::Channels { channels } => {
                self.directory = channels;
                self.announce_channels();
            }
            RelayToClient::Joined { channel, members } => {
                self.presence.insert(channel.clone(), BTreeMap::new());
                self.add_members(channel, members);
            }
            RelayToClient::Members { channel, members } => self.add_members(channel, members),
            RelayToClient::Presence {
                channel,
                change,
                member,
            } => self.on_presence(channel, change, member),
            RelayToClient::Left { channel } => {
                self.news(PeerNews::Left {
                    channel: channel.clone(),
                });
                self.presence.remove(&channel);
                self.wanted_channels.remove(&channel);
                self.announce_channels();
                self.announce_members(channel);
            }
            RelayToClient::Message { envelope } => self.on_envelope(envelope, false),
            RelayToClient::Ack { envelope } => self.on_envelope(envelope, true),
            RelayToClient::Error {
                code,
                message,
                nonce,
            } => self.on_error(now, code, message, nonce),
            RelayToClient::Invite { token } => self.event(ClientEvent::InviteMinted { token }),
            RelayToClient::Signal { from, data } => self.news(PeerNews::Signal { from, data }),
            RelayToClient::Peer { from, frame } => self.news(PeerNews::PeerFrame { from, frame }),
            RelayToClient::Challenge { .. }
            | RelayToClient::Welcome { .. }
            | RelayToClient::Pong => {}
        }
    }

    pub(super) fn add_members(&mut self, channel: ChannelName, members: Vec<MemberPresence>) {
        let Some(online) = self.presence.get_mut(&channel) else {
            return;
        };
        let addresses = members.iter().map(ChannelPeer::from).collect();
        let profiles: Vec<Profile> = members.iter().filter_map(|m| m.profile.clone()).collect();
        for member in members {
            online.insert(member.session, member);
        }
        self.news(PeerNews::Listed {
            channel: channel.clone(),
            members: addresses,
        });
        self.save_profiles(profiles);
        self.announce_members(channel);
    }

    pub(super) fn on_presence(
        &mut self,
        channel: ChannelName,
        change: PresenceChange,
        member: MemberPresence,
    ) {
        let Some(online) = self.presence.get_mut(&channel) else {
            return;
        };
        let peer = ChannelPeer::from(&member);
        let mut profiles = Vec::new();
        let news = match change {
            PresenceChange::Joined | PresenceChange::Updated => {
                profiles.extend(member.profile.clone());
                let arrived = online.insert(member.session, member).is_none();
                arrived.then(|| PeerNews::Arrived {
                    channel: channel.clone(),
                    member: peer,
                })
            }
            PresenceChange::Left => online.remove(&member.session).map(|_| PeerNews::Departed {
                channel: channel.clone(),
                session: peer.address.session,
            }),
        };
        if let Some(news) = news {
            self.news(news);
        }
        self.save_profiles(profiles);
        self.announce_members(channel);
    }

    /// Emits the profiles (of members just listed, arrived or renamed) whose member signature
    /// verifies, so history can name their authors. Members already known are not checked again.
    pub(super) fn save_profiles(&mut self, profiles: Vec<Profile>) {
        let Some(relay) = self.pinned_relay else {
            return;
        };
        let verified: Vec<Profile> = profiles
            .into_iter()
            .filter(|profile| {
                profile
                    .member
                    .verifier()
                    .is_ok_and(|verifier| profile.verify(&relay, &verifier).is_ok())
            })
            .collect();
        for profile in verified {
            self.push(ClientOutput::SaveProfile(profile));
        }
    }

    pub(super) fn announce_members(&mut self, channel: ChannelName) {
        let me = self.key.public_key();
        let mut by_key: BTreeMap<PublicKey, MemberView> = BTreeMap::new();
        for member in self
            .presence
            .get(&channel)
            .into_iter()
            .flat_map(|m| m.values())
        {
            by_key.entry(member.key).or_insert_with(|| MemberView {
                key: member.key,
                fingerprint: member.key.fingerprint(),
                role: member.role,
                display_name: member
                    .profile
                    .as_ref()
                    .filter(|profile| profile.member == member.key)
                    .map(|profile| profile.display_name.clone()),
                is_me: member.key == me,
            });
        }
        self.event(ClientEvent::Members {
            channel,
            members: by_key.into_values().collect(),
        });
    }

    pub(super) fn on_join(&mut self, channel: ChannelName) {
        if self.wanted_channels.len() >= MAX_CHANNELS_PER_SESSION
            && !self.wanted_channels.contains(&channel)
        {
            return self.event(ClientEvent::Problem {
                code: Some(ErrorCode::TooManyChannels),
                message: format!("A member can be in at most {MAX_CHANNELS_PER_SESSION} channels."),
            });
        }
        if self.wanted_channels.insert(channel.clone()) {
            self.announce_channels();
        }
        if self.is_online() {
            self.transmit(&ClientToRelay::Join { channel });
        }
    }

    pub(super) fn announce_channels(&mut self) {
        self.event(ClientEvent::Channels {
            channels: self.directory.clone(),
            joined: self.wanted_channels.iter().cloned().collect(),
        });
    }

    pub(super) fn on_set_display_name(&mut self, now: UnixMillis, name: DisplayName) {
        self.display_name = Some(name);
        if let (true, Some(relay)) = (self.is_online(), self.pinned_relay) {
            if let Some(profile) = self.signed_profile(&relay, now) {
                self.transmit(&ClientToRelay::SetProfile { profile });
            }
        }
    }
}
