//! Logging in: the challenge, the relay-key pin, the certificate or invite, and the welcome.

use super::{ClientEvent, ClientOutput, ClientSession, Connection, PeerNews};
use crate::channel::ChannelName;
use crate::frames::{ChannelSummary, ClientToRelay, ErrorCode, Login, RelayToClient, SessionId};
use crate::identity::{PublicKey, Verifier};
use crate::limits::MAX_CHANNELS_PER_SESSION;
use crate::login::sign_login;
use crate::membership::{MembershipCertificate, Profile, Role};
use crate::time::UnixMillis;
use crate::PROTOCOL_VERSION;

impl ClientSession {
    pub(super) fn on_frame_before_login(
        &mut self,
        now: UnixMillis,
        frame: RelayToClient,
        deadline: UnixMillis,
    ) {
        let RelayToClient::Challenge {
            protocol,
            relay,
            nonce,
        } = frame
        else {
            return self.on_frame_online_only(frame);
        };
        if protocol != PROTOCOL_VERSION {
            let message = format!(
                "The relay speaks protocol version {protocol}; this client speaks version {PROTOCOL_VERSION}."
            );
            return self.stop(now, message);
        }
        match self.pinned_relay {
            Some(pinned) if pinned != relay => {
                let message = format!(
                    "The relay now presents key {} ({}), but this browser first met it with key {} ({}). It may be another server posing as it; nothing was sent to it.",
                    relay,
                    relay.fingerprint(),
                    pinned,
                    pinned.fingerprint()
                );
                return self.stop(now, message);
            }
            Some(_) => {}
            None => {
                self.pinned_relay = Some(relay);
                self.push(ClientOutput::PinRelayKey(relay));
            }
        }
        let Ok(verifier) = relay.verifier() else {
            return self.stop(now, "The relay's key is not a valid Ed25519 key.".into());
        };
        let login = Login {
            protocol: PROTOCOL_VERSION,
            key: self.key.public_key(),
            signature: sign_login(&self.key, &relay, &nonce),
            certificate: self.certificate.clone(),
            invite: self
                .certificate
                .is_none()
                .then(|| self.invite.clone())
                .flatten(),
            profile: self.signed_profile(&relay, now),
        };
        self.transmit(&ClientToRelay::Login(Box::new(login)));
        self.connection = Connection::AwaitingWelcome {
            relay: verifier,
            deadline,
        };
    }

    pub(super) fn signed_profile(&self, relay: &PublicKey, now: UnixMillis) -> Option<Profile> {
        let name = self.display_name.clone()?;
        Some(Profile::sign(&self.key, relay, name, now))
    }

    pub(super) fn on_frame_awaiting_welcome(
        &mut self,
        now: UnixMillis,
        frame: RelayToClient,
        relay: Verifier,
        deadline: UnixMillis,
    ) {
        match frame {
            RelayToClient::Welcome {
                session,
                role,
                certificate,
                channels,
                ice_servers,
            } => {
                self.news(PeerNews::Online {
                    session,
                    me: self.key.public_key(),
                    role,
                    relay: relay.public_key(),
                    ice_servers,
                    relay_time: certificate.issued_at,
                });
                self.connection = Connection::Online { relay };
                self.on_welcome(now, session, role, certificate, channels);
            }
            RelayToClient::Error { code, message, .. } => {
                self.connection = Connection::AwaitingWelcome { relay, deadline };
                self.on_login_refused(now, code, message);
            }
            other => {
                self.connection = Connection::AwaitingWelcome { relay, deadline };
                self.on_frame_online_only(other);
            }
        }
    }

    pub(super) fn on_login_refused(&mut self, now: UnixMillis, code: ErrorCode, message: String) {
        match code {
            ErrorCode::InvalidCredential if self.certificate.is_some() => {
                // An expired or revoked certificate: forget it and try again without it (an open
                // relay issues a new one; an invite-only relay says so).
                self.certificate = None;
                self.push(ClientOutput::SaveCertificate(None));
                self.event(ClientEvent::Problem {
                    code: Some(code),
                    message,
                });
            }
            ErrorCode::NotAdmitted
            | ErrorCode::InvalidCredential
            | ErrorCode::InviteUsedUp
            | ErrorCode::Banned
            | ErrorCode::UnsupportedVersion => {
                self.stop(now, format!("The relay refused this member: {message}"))
            }
            _ => self.event(ClientEvent::Problem {
                code: Some(code),
                message,
            }),
        }
    }

    pub(super) fn on_welcome(
        &mut self,
        now: UnixMillis,
        session: SessionId,
        role: Role,
        certificate: MembershipCertificate,
        channels: Vec<ChannelSummary>,
    ) {
        self.failed_attempts = 0;
        self.invite = None;
        if self.certificate.as_ref() != Some(&certificate) {
            self.certificate = Some(certificate.clone());
            self.push(ClientOutput::SaveCertificate(Some(certificate)));
        }
        let relay = match &self.connection {
            Connection::Online { relay } => relay.public_key(),
            _ => return,
        };
        self.announce_connection(now);
        self.event(ClientEvent::Welcome {
            session,
            role,
            relay,
        });
        let defaults = channels.iter().filter(|summary| summary.default);
        self.wanted_channels
            .extend(defaults.map(|summary| summary.name.clone()));
        self.directory = channels;
        self.announce_channels();
        let wanted: Vec<ChannelName> = self
            .wanted_channels
            .iter()
            .take(MAX_CHANNELS_PER_SESSION)
            .cloned()
            .collect();
        for channel in wanted {
            self.transmit(&ClientToRelay::Join { channel });
        }
        self.flush_outbox();
    }
}
