//! JSON text codec for frames, with size limits and errors that map onto protocol error codes.

use crate::frames::{ClientToRelay, ErrorCode, RelayToClient};
use crate::limits::MAX_CLIENT_FRAME_BYTES;
use crate::peer::{PeerToPeer, MAX_PEER_FRAME_BYTES};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest frame a client accepts from the relay, in bytes.
pub const MAX_RELAY_FRAME_BYTES: usize = 1024 * 1024;
/// Error messages echoing a parser's complaint are cut to this many bytes.
const MAX_ERROR_DETAIL_BYTES: usize = 200;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    #[error("invalid field: {0}")]
    InvalidField(String),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::Malformed(_) => ErrorCode::MalformedFrame,
            DecodeError::UnknownType(_) => ErrorCode::UnknownType,
            DecodeError::InvalidField(_) => ErrorCode::InvalidField,
        }
    }
}

/// Serialises any frame to its JSON text.
#[allow(
    clippy::expect_used,
    reason = "serde_json fails only on maps with non-string keys, which no frame has"
)]
pub fn encode<Frame: Serialize>(frame: &Frame) -> String {
    serde_json::to_string(frame).expect("frames contain only strings, numbers, arrays and maps")
}

pub fn decode_client_frame(text: &str) -> Result<ClientToRelay, DecodeError> {
    decode(text, MAX_CLIENT_FRAME_BYTES, ClientToRelay::TYPES)
}

pub fn decode_relay_frame(text: &str) -> Result<RelayToClient, DecodeError> {
    decode(text, MAX_RELAY_FRAME_BYTES, RelayToClient::TYPES)
}

pub fn decode_peer_frame(text: &str) -> Result<PeerToPeer, DecodeError> {
    decode(text, MAX_PEER_FRAME_BYTES, PeerToPeer::TYPES)
}

fn decode<Frame: DeserializeOwned>(
    text: &str,
    limit: usize,
    known_types: &[&str],
) -> Result<Frame, DecodeError> {
    if text.len() > limit {
        return Err(DecodeError::TooLarge {
            size: text.len(),
            limit,
        });
    }
    serde_json::from_str(text).map_err(|error| classify(text, &error, known_types))
}

#[derive(serde::Deserialize)]
struct TypeProbe<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// Tells apart bad JSON, a non-frame, an unknown `type` and a bad field of a known frame. Runs
/// only on the error path, so valid frames are parsed once.
fn classify(text: &str, error: &serde_json::Error, known_types: &[&str]) -> DecodeError {
    if !error.is_data() {
        return DecodeError::Malformed(truncated(format!("not valid JSON: {error}")));
    }
    match serde_json::from_str::<TypeProbe<'_>>(text) {
        Ok(TypeProbe { kind: Some(kind) }) if known_types.contains(&kind.as_ref()) => {
            DecodeError::InvalidField(truncated(error.to_string()))
        }
        Ok(TypeProbe { kind: Some(kind) }) => {
            DecodeError::UnknownType(truncated(kind.into_owned()))
        }
        _ => DecodeError::Malformed("a frame is a JSON object with a string field \"type\"".into()),
    }
}

fn truncated(mut text: String) -> String {
    if text.len() > MAX_ERROR_DETAIL_BYTES {
        let mut end = MAX_ERROR_DETAIL_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn check(text: &str, expected: ErrorCode) {
        let error = decode_client_frame(text).expect_err(text);
        assert_eq!(error.code(), expected, "{text}: {error}");
    }

    #[test]
    fn decoding_errors_map_to_protocol_error_codes() {
        check("", ErrorCode::MalformedFrame);
        check("{", ErrorCode::MalformedFrame);
        check("[1,2]", ErrorCode::MalformedFrame);
        check("\"join\"", ErrorCode::MalformedFrame);
        check("{\"channel\":\"general\"}", ErrorCode::MalformedFrame);
        check("{\"type\":7}", ErrorCode::MalformedFrame);
        check("{\"type\":\"teleport\"}", ErrorCode::UnknownType);
        check("{\"type\":\"join\"}", ErrorCode::InvalidField);
        check(
            "{\"type\":\"join\",\"channel\":\"Bad Name\"}",
            ErrorCode::InvalidField,
        );
        check(
            "{\"type\":\"signal\",\"to\":-1,\"data\":\"x\"}",
            ErrorCode::InvalidField,
        );
        let oversized = format!(
            "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
            "x".repeat(MAX_CLIENT_FRAME_BYTES)
        );
        check(&oversized, ErrorCode::FrameTooLarge);
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let frame = decode_client_frame("{\"type\":\"ping\",\"added_in_v2\":true}").unwrap();
        assert_eq!(frame, ClientToRelay::Ping);
    }

    #[test]
    fn error_details_are_bounded() {
        let long_type = format!("{{\"type\":\"{}\"}}", "é".repeat(1000));
        let DecodeError::UnknownType(detail) = decode_client_frame(&long_type).unwrap_err() else {
            panic!("expected unknown type");
        };
        assert!(detail.len() <= MAX_ERROR_DETAIL_BYTES + '…'.len_utf8());
    }
}
