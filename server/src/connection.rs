//! One WebSocket connection: challenge, login, then frames in and queued frames out until the
//! client leaves, goes idle, reads too slowly, or the relay shuts down.

use crate::client_address::ClientAddress;
use crate::hub::{now_millis, Hub, PendingLogin, Refusal, SessionHandle, Shortfall};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use peerchat_shared::codec::{decode_client_frame, encode, DecodeError};
use peerchat_shared::frames::{ClientToRelay, ErrorCode, Login, RelayToClient, SessionId};
use peerchat_shared::identity::Verifier;
use peerchat_shared::limits::MAX_SIGNAL_BYTES;
use peerchat_shared::login::{verify_login, LoginNonce};
use peerchat_shared::membership::{MembershipCertificate, Role};
use peerchat_shared::message::ClientNonce;
use peerchat_shared::PROTOCOL_VERSION;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A logged-in connection's identity, fixed at login.
struct Member {
    session: SessionId,
    verifier: Verifier,
    role: Role,
    /// The role its membership certificate carries: what an invite or an earlier certificate
    /// granted, never a role from the configuration (see [`GrantedRoles`]).
    certificate_role: Role,
}

/// The roles a login gets.
struct GrantedRoles {
    /// For this session: the configuration's role for the key if it has one (`--owners`,
    /// `--virtual-client-keys`), else the certificate's.
    session: Role,
    /// For the certificate handed out: only what credentials granted, so that taking a key out
    /// of `--owners` or `--virtual-client-keys` demotes it at its next login.
    certificate: Role,
    /// The invite whose use this login took, if it came with one.
    spent_invite: Option<[u8; 16]>,
}

pub(crate) async fn serve(
    mut socket: WebSocket,
    hub: Arc<Hub>,
    address: ClientAddress,
    pending: PendingLogin,
    shutdown: CancellationToken,
) {
    hub.metrics.connection_opened();
    let nonce = LoginNonce(rand::random());
    let challenge = RelayToClient::Challenge {
        protocol: PROTOCOL_VERSION,
        relay: hub.relay_key,
        nonce,
    };
    if send(&mut socket, &challenge).await.is_ok() {
        let deadline = Instant::now() + hub.config.limits.challenge_ttl;
        let admitted = login(&mut socket, &hub, address, &nonce, deadline).await;
        drop(pending);
        if let Some((member, handle)) = admitted {
            let session = member.session;
            run_session(&mut socket, &hub, member, handle, &shutdown).await;
            hub.unregister(session);
        }
    }
    hub.metrics.connection_closed();
}

/// A client that does not take a frame within this time is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes one message, giving up on a client that stopped reading.
async fn write(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}

async fn send(socket: &mut WebSocket, frame: &RelayToClient) -> Result<(), ()> {
    write(socket, Message::Text(Utf8Bytes::from(encode(frame)))).await
}

async fn send_error(
    socket: &mut WebSocket,
    hub: &Hub,
    refusal: Refusal,
    nonce: Option<ClientNonce>,
) {
    hub.metrics.rejected(refusal.code);
    let frame = RelayToClient::Error {
        code: refusal.code,
        message: refusal.message,
        nonce,
    };
    let _ = send(socket, &frame).await;
}

/// Sends the error, then a close frame, and lets the connection end.
async fn close_with(socket: &mut WebSocket, hub: &Hub, refusal: Refusal) {
    let reason = Utf8Bytes::from(refusal.message.clone());
    send_error(socket, hub, refusal, None).await;
    let _ = write(
        socket,
        Message::Close(Some(CloseFrame { code: 1008, reason })),
    )
    .await;
    finish_closing_handshake(socket).await;
}

/// How long to wait for the client's answering close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Waits briefly for the client's close frame before the TCP connection is dropped. Dropping at
/// once can make the client's kernel discard frames it has not read yet (the error, say).
async fn finish_closing_handshake(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Waits for the `login` frame and admits the member, or answers with an error and gives up.
async fn login(
    socket: &mut WebSocket,
    hub: &Hub,
    address: ClientAddress,
    nonce: &LoginNonce,
    deadline: Instant,
) -> Option<(Member, SessionHandle)> {
    let text = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, socket.recv()).await {
            Err(_) => {
                close_with(
                    socket,
                    hub,
                    Refusal::new(
                        ErrorCode::ChallengeExpired,
                        "no login before the challenge expired",
                    ),
                )
                .await;
                return None;
            }
            Ok(None | Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Text(text)))) => break text,
            Ok(Some(Ok(Message::Binary(_)))) => {
                close_with(
                    socket,
                    hub,
                    Refusal::new(ErrorCode::MalformedFrame, "frames are JSON text"),
                )
                .await;
                return None;
            }
            Ok(Some(Ok(_))) => continue,
        }
    };
    let login = match decode_client_frame(text.as_str()) {
        Ok(ClientToRelay::Login(login)) => login,
        Ok(other) => {
            close_with(
                socket,
                hub,
                Refusal::new(
                    ErrorCode::NotLoggedIn,
                    format!("log in before sending {}", other.type_name()),
                ),
            )
            .await;
            return None;
        }
        Err(error) => {
            close_with(socket, hub, Refusal::new(error.code(), error.to_string())).await;
            return None;
        }
    };
    match admit(hub, address, nonce, &login) {
        Ok(admitted) => Some(admitted),
        Err(refusal) => {
            close_with(socket, hub, refusal).await;
            None
        }
    }
}

/// Checks a login frame: version, signature over this connection's nonce, bans, admission.
fn admit(
    hub: &Hub,
    address: ClientAddress,
    nonce: &LoginNonce,
    login: &Login,
) -> Result<(Member, SessionHandle), Refusal> {
    let now = Instant::now();
    if !hub.may_attempt_login(address, now) {
        return Err(Refusal::new(
            ErrorCode::RateLimited,
            "too many failed logins from this address; wait a minute",
        ));
    }
    if login.protocol != PROTOCOL_VERSION {
        return Err(Refusal::new(
            ErrorCode::UnsupportedVersion,
            format!("this relay speaks protocol {PROTOCOL_VERSION}"),
        ));
    }
    let verified =
        login.key.verifier().ok().filter(|verifier| {
            verify_login(verifier, &hub.relay_key, nonce, &login.signature).is_ok()
        });
    let Some(verifier) = verified else {
        hub.note_failed_login(address, now);
        return Err(Refusal::new(
            ErrorCode::LoginFailed,
            "the login signature does not verify for this challenge",
        ));
    };
    if hub.config.banned.contains(&login.key) {
        return Err(Refusal::new(
            ErrorCode::Banned,
            "this key is banned from this relay",
        ));
    }
    if let Some(profile) = &login.profile {
        profile.verify(&hub.relay_key, &verifier).map_err(|error| {
            Refusal::new(
                ErrorCode::BadSignature,
                format!("profile rejected: {error}"),
            )
        })?;
    }
    let roles = admission_roles(hub, login).inspect_err(|_| {
        hub.note_failed_login(address, now);
    })?;
    let handle = hub
        .register(
            login.key,
            roles.session,
            address,
            login.profile.clone(),
            now,
        )
        .inspect_err(|_| {
            // Not admitted after all (the relay or this key is full): the invite keeps its use.
            if let Some(invite_id) = roles.spent_invite {
                hub.refund_invite(invite_id);
            }
        })?;
    Ok((
        Member {
            session: handle.id,
            verifier,
            role: roles.session,
            certificate_role: roles.certificate,
        },
        handle,
    ))
}

/// The roles a login is admitted with: from the configuration, its certificate, its invite, or
/// an open relay.
fn admission_roles(hub: &Hub, login: &Login) -> Result<GrantedRoles, Refusal> {
    let now = now_millis();
    let owner = hub.config.owners.contains(&login.key);
    let virtual_client = hub.config.virtual_clients.contains(&login.key);
    let invalid = |what: &str, error: &dyn std::fmt::Display| {
        Refusal::new(
            ErrorCode::InvalidCredential,
            format!("{what} rejected: {error}"),
        )
    };
    let mut spent_invite = None;
    let granted = if let Some(certificate) = &login.certificate {
        certificate
            .verify(&hub.relay_verifier, &login.key, now)
            .map_err(|error| invalid("certificate", &error))?;
        Some(certificate.role)
    } else if let Some(invite) = &login.invite {
        invite
            .verify(&hub.relay_verifier, now)
            .map_err(|error| invalid("invite", &error))?;
        hub.use_invite(invite.invite_id, invite.max_uses, invite.expires_at, now)?;
        spent_invite = Some(invite.invite_id);
        Some(invite.role)
    } else {
        None
    };
    let configured = if owner {
        Some(Role::Owner)
    } else if virtual_client {
        Some(Role::Virtual)
    } else {
        None
    };
    let certificate = match (granted, configured, hub.config.admission) {
        (Some(role), _, _) => role,
        (None, Some(_), _) | (None, None, crate::config::Admission::Open) => Role::Member,
        (None, None, crate::config::Admission::InviteOnly) => {
            return Err(Refusal::new(
                ErrorCode::NotAdmitted,
                "this relay is invite-only: open an invite link first",
            ))
        }
    };
    Ok(GrantedRoles {
        session: configured.unwrap_or(certificate),
        certificate,
        spent_invite,
    })
}

fn welcome(hub: &Hub, member: &Member) -> RelayToClient {
    let issued_at = now_millis();
    let ttl = u64::try_from(hub.config.limits.certificate_ttl.as_millis()).unwrap_or(u64::MAX);
    let certificate = MembershipCertificate::issue(
        &hub.config.signing_key,
        member.verifier.public_key(),
        member.certificate_role,
        issued_at,
        issued_at.saturating_add_millis(ttl),
    );
    RelayToClient::Welcome {
        session: member.session,
        role: member.role,
        certificate,
        channels: hub.channel_summaries(),
        ice_servers: hub.config.ice_servers.clone(),
    }
}

/// Leaves the session's channels at once (the others see it go), then tries, within the write
/// time-out, to finish the frame being written and send `slow_consumer` and a close frame.
async fn say_slow_consumer(socket: &mut WebSocket, hub: &Hub, handle: &SessionHandle) {
    hub.leave_all(handle.id);
    let refusal = Refusal::new(ErrorCode::SlowConsumer, "you were not reading fast enough");
    close_with(socket, hub, refusal).await;
}

/// Delivers what is already queued for the session, then the error `refusal` and a close frame.
async fn close_after_queued(
    socket: &mut WebSocket,
    hub: &Hub,
    handle: &SessionHandle,
    refusal: Refusal,
) {
    while let Some(bytes) = handle.send_queue.try_pop() {
        if write(socket, Message::Text(bytes)).await.is_err() {
            return;
        }
    }
    close_with(socket, hub, refusal).await;
}

/// What every session is told when the relay shuts down.
fn goodbye() -> Refusal {
    Refusal::new(
        ErrorCode::ShuttingDown,
        "the relay is restarting; reconnect shortly",
    )
}

/// What stopped a session task while it was writing a frame.
enum Interruption {
    Evicted,
    ShuttingDown,
}

async fn run_session(
    socket: &mut WebSocket,
    hub: &Hub,
    member: Member,
    handle: SessionHandle,
    shutdown: &CancellationToken,
) {
    if send(socket, &welcome(hub, &member)).await.is_err() {
        return;
    }
    let limits = &hub.config.limits;
    let first_ping = Instant::now() + limits.ping_interval;
    let mut ping = tokio::time::interval_at(first_ping, limits.ping_interval);
    let mut last_heard = Instant::now();
    let mut strikes = 0u32;
    // Created once: re-creating them each turn of the loop would register and unregister a
    // waiter on the relay-wide shutdown token for every frame delivered.
    let shutting_down = shutdown.cancelled();
    tokio::pin!(shutting_down);
    let evicted = handle.evicted.cancelled();
    tokio::pin!(evicted);
    loop {
        tokio::select! {
            () = &mut shutting_down => return close_after_queued(socket, hub, &handle, goodbye()).await,
            () = &mut evicted => return say_slow_consumer(socket, hub, &handle).await,
            bytes = handle.send_queue.pop() => {
                // A reader too slow to take this frame is evicted meanwhile: stop waiting for it
                // then (the frame stays buffered and goes out first if the reader wakes up). A
                // shutdown meanwhile lets the frame finish (within the write time-out) and then
                // says goodbye like any other.
                let interruption = {
                    let written = write(socket, Message::Text(bytes));
                    tokio::pin!(written);
                    tokio::select! {
                        result = &mut written => match result {
                            Ok(()) => None,
                            Err(()) => return,
                        },
                        () = &mut evicted => Some(Interruption::Evicted),
                        () = &mut shutting_down => {
                            if written.await.is_err() {
                                return;
                            }
                            Some(Interruption::ShuttingDown)
                        }
                    }
                };
                match interruption {
                    None => {}
                    Some(Interruption::Evicted) => return say_slow_consumer(socket, hub, &handle).await,
                    Some(Interruption::ShuttingDown) => return close_after_queued(socket, hub, &handle, goodbye()).await,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.idle_timeout {
                    let _ = write(socket, Message::Close(Some(CloseFrame { code: 1001, reason: "idle".into() }))).await;
                    return;
                }
                if write(socket, Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { return };
                last_heard = Instant::now();
                // Everything but a pong counts against the key's rates, WebSocket pings and
                // binary messages too: each makes the relay send something back.
                let frame = match message {
                    Message::Text(text) => Some(decode_client_frame(text.as_str())),
                    Message::Binary(_) => Some(Err(DecodeError::Malformed("frames are JSON text".into()))),
                    Message::Ping(_) => None,
                    Message::Pong(_) => continue,
                    Message::Close(_) => return,
                };
                let forwarded_bytes = match &frame {
                    Some(Ok(ClientToRelay::Peer { frame, .. })) => Some(frame.len()),
                    _ => None,
                };
                if let Err((refusal, shortfall)) =
                    check_rate(hub, member.session, forwarded_bytes, last_heard)
                {
                    // Only the member's own excess counts towards "flooding", not its
                    // neighbours' at the same address.
                    if shortfall == Shortfall::Key {
                        strikes += 1;
                    }
                    if strikes > limits.max_rate_limit_strikes {
                        let refusal = Refusal::new(ErrorCode::RateLimited, "flooding; disconnected");
                        return close_after_queued(socket, hub, &handle, refusal).await;
                    }
                    refuse(hub, &member, refusal, None);
                    continue;
                }
                strikes = 0;
                if let Some(frame) = frame {
                    handle_frame(hub, &member, frame);
                }
            }
        }
    }
}

/// A `peer` frame (`forwarded_bytes` long) counts against the byte quota of the key and the
/// address; every other frame against their frame rates.
fn check_rate(
    hub: &Hub,
    session: SessionId,
    forwarded_bytes: Option<usize>,
    now: Instant,
) -> Result<(), (Refusal, Shortfall)> {
    let (verdict, message) = match forwarded_bytes {
        Some(bytes) => (
            hub.allow_peer_bytes(session, bytes, now),
            "peer frame quota used up; slow down",
        ),
        None => (hub.allow_frame(session, now), "too many frames; slow down"),
    };
    verdict.map_err(|shortfall| {
        let message = match shortfall {
            Shortfall::Key => message.to_owned(),
            Shortfall::Address => format!("{message} (the quota of your address)"),
        };
        (Refusal::new(ErrorCode::RateLimited, message), shortfall)
    })
}

/// Queues an `error` frame for a logged-in member, behind what is already queued for it.
fn refuse(hub: &Hub, member: &Member, refusal: Refusal, nonce: Option<ClientNonce>) {
    hub.metrics.rejected(refusal.code);
    let frame = RelayToClient::Error {
        code: refusal.code,
        message: refusal.message,
        nonce,
    };
    hub.reply(member.session, &frame);
}

/// Handles one frame from a logged-in member; failures become `error` frames, never panics.
/// Every answer goes through the session's queue, so the member sees the relay's frames in the
/// order they were decided: a `pong` comes after every frame queued before its `ping`.
fn handle_frame(hub: &Hub, member: &Member, frame: Result<ClientToRelay, DecodeError>) {
    let frame = match frame {
        Ok(frame) => frame,
        Err(error) => {
            let refusal = Refusal::new(error.code(), error.to_string());
            return refuse(hub, member, refusal, None);
        }
    };
    let mut error_nonce = None;
    let outcome = match frame {
        ClientToRelay::Login(_) => Err(Refusal::new(
            ErrorCode::AlreadyLoggedIn,
            "already logged in",
        )),
        ClientToRelay::Join { channel } => hub.join(member.session, &channel),
        ClientToRelay::Leave { channel } => hub.leave(member.session, &channel),
        ClientToRelay::ListChannels => {
            let channels = hub.channel_summaries();
            hub.reply(member.session, &RelayToClient::Channels { channels });
            Ok(())
        }
        ClientToRelay::Send { draft } => {
            error_nonce = Some(draft.nonce);
            match draft.verify(&hub.relay_key, &member.verifier) {
                Ok(verified) => hub.publish(member.session, verified, Instant::now()),
                Err(_) => Err(Refusal::new(
                    ErrorCode::BadSignature,
                    "the draft's signature does not verify for your key",
                )),
            }
        }
        ClientToRelay::SetProfile { profile } => {
            match profile.verify(&hub.relay_key, &member.verifier) {
                Ok(()) => hub.update_profile(member.session, profile),
                Err(error) => Err(Refusal::new(
                    ErrorCode::BadSignature,
                    format!("profile rejected: {error}"),
                )),
            }
        }
        ClientToRelay::Signal { to, data } if data.len() > MAX_SIGNAL_BYTES => {
            let _ = to;
            Err(Refusal::new(
                ErrorCode::InvalidField,
                format!("signal data is limited to {MAX_SIGNAL_BYTES} bytes"),
            ))
        }
        ClientToRelay::Signal { to, data } => hub.signal(member.session, to, data),
        ClientToRelay::Peer { to, frame } => hub.forward_peer_frame(member.session, to, frame),
        ClientToRelay::MintInvite { .. } if member.role != Role::Owner => Err(Refusal::new(
            ErrorCode::Forbidden,
            "only owners can mint invites",
        )),
        ClientToRelay::MintInvite {
            role,
            max_uses,
            ttl_seconds,
        } => {
            let token = crate::invites::mint(
                &hub.config.signing_key,
                role,
                max_uses,
                Duration::from_secs(ttl_seconds),
            );
            hub.reply(member.session, &RelayToClient::Invite { token });
            Ok(())
        }
        ClientToRelay::Ping => {
            hub.reply(member.session, &RelayToClient::Pong);
            Ok(())
        }
    };
    if let Err(refusal) = outcome {
        refuse(hub, member, refusal, error_nonce);
    }
}
