//! The outbox: what the member wrote, sent and resent until the relay acknowledges it.

use super::{
    ClientEvent, ClientOutput, ClientSession, Connection, OutboxEntry, MAX_OUTBOX_ENTRIES,
    RATE_LIMITED_RESEND_MILLIS,
};
use crate::channel::ChannelName;
use crate::frames::{ClientToRelay, ErrorCode};
use crate::message::{ClientNonce, Draft, Envelope, MessageBody};
use crate::time::UnixMillis;

impl ClientSession {
    pub(super) fn flush_outbox(&mut self) {
        let Some(relay) = self.pinned_relay else {
            return;
        };
        let drafts: Vec<ClientToRelay> = self
            .outbox
            .iter()
            .map(|entry| ClientToRelay::Send {
                draft: Draft::sign(
                    &self.key,
                    &relay,
                    entry.channel.clone(),
                    entry.nonce,
                    entry.body.clone(),
                ),
            })
            .collect();
        for frame in &drafts {
            self.transmit(frame);
        }
    }

    pub(super) fn on_envelope(&mut self, envelope: Envelope, acknowledged: bool) {
        let Connection::Online { relay } = &self.connection else {
            return;
        };
        let (id, nonce, author) = (envelope.id, envelope.nonce, envelope.author);
        match envelope.verify(relay) {
            Ok(verified) => {
                let own = author == self.key.public_key();
                let was_pending = own && self.remove_from_outbox(&nonce);
                self.push(ClientOutput::Store {
                    envelope: verified,
                    acknowledged: acknowledged || was_pending,
                });
            }
            Err(rejection) => self.event(ClientEvent::Problem {
                code: Some(ErrorCode::BadSignature),
                message: format!("Message {id} was discarded: {rejection}."),
            }),
        }
    }

    pub(super) fn remove_from_outbox(&mut self, nonce: &ClientNonce) -> bool {
        let before = self.outbox.len();
        self.outbox.retain(|entry| entry.nonce != *nonce);
        before != self.outbox.len()
    }

    pub(super) fn on_error(
        &mut self,
        now: UnixMillis,
        code: ErrorCode,
        message: String,
        nonce: Option<ClientNonce>,
    ) {
        let Some(nonce) = nonce.filter(|nonce| self.outbox.iter().any(|e| e.nonce == *nonce))
        else {
            return self.event(ClientEvent::Problem {
                code: Some(code),
                message,
            });
        };
        if code == ErrorCode::RateLimited {
            // Still in the outbox: offered again shortly, with the same nonce.
            self.resend_at = Some(now.saturating_add_millis(RATE_LIMITED_RESEND_MILLIS));
            return;
        }
        self.remove_from_outbox(&nonce);
        self.push(ClientOutput::OutboxRemove(nonce));
        self.event(ClientEvent::SendFailed {
            nonce,
            code,
            message,
        });
    }

    pub(super) fn on_send(
        &mut self,
        now: UnixMillis,
        channel: ChannelName,
        body: MessageBody,
        nonce: ClientNonce,
    ) {
        if let Err(invalid) = body.validate() {
            return self.event(ClientEvent::SendFailed {
                nonce,
                code: ErrorCode::InvalidField,
                message: format!("This message cannot be sent: {invalid}."),
            });
        }
        if self.outbox.len() >= MAX_OUTBOX_ENTRIES {
            return self.event(ClientEvent::SendFailed {
                nonce,
                code: ErrorCode::RateLimited,
                message: format!(
                    "{MAX_OUTBOX_ENTRIES} messages are already waiting to be sent; try again once they are."
                ),
            });
        }
        let entry = OutboxEntry {
            channel,
            nonce,
            body,
            queued_at: now,
        };
        self.outbox.push(entry.clone());
        self.push(ClientOutput::OutboxPut(entry.clone()));
        self.event(ClientEvent::Pending {
            entry: entry.clone(),
        });
        if let (true, Some(relay)) = (self.is_online(), self.pinned_relay) {
            let draft = Draft::sign(&self.key, &relay, entry.channel, entry.nonce, entry.body);
            self.transmit(&ClientToRelay::Send { draft });
        }
    }
}
