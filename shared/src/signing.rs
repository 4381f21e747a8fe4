//! The exact byte strings that get signed: a domain tag, a zero byte, then fields in a fixed layout.
//!
//! Signatures never cover a re-serialised structure. Each signed object builds its byte string
//! here, field by field: fixed-size fields as raw bytes, integers as big-endian, and
//! variable-length fields as a big-endian `u32` length followed by the bytes. docs/protocol.md
//! gives the layout of each and hex test vectors.

/// What a signature is for. Each purpose has its own tag, so a signature made for one purpose
/// never verifies for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A member proves possession of their key to a relay at login.
    LoginResponse,
    /// A member signs a message draft before the relay stamps it.
    Draft,
    /// The relay signs a stamped message envelope.
    Envelope,
    /// The relay admits a member with a membership certificate.
    Membership,
    /// The relay mints an invite token.
    Invite,
    /// A member signs their public profile (display name).
    Profile,
    /// Not a signature domain: the prefix of the canonical content encoding that gets hashed.
    Content,
}

impl Domain {
    /// Every domain under which something is signed (all but [`Domain::Content`]).
    pub const SIGNING: [Domain; 6] = [
        Domain::LoginResponse,
        Domain::Draft,
        Domain::Envelope,
        Domain::Membership,
        Domain::Invite,
        Domain::Profile,
    ];

    /// The ASCII tag that opens every byte string of this domain.
    pub const fn tag(self) -> &'static str {
        match self {
            Domain::LoginResponse => "peerchat/v1/login",
            Domain::Draft => "peerchat/v1/draft",
            Domain::Envelope => "peerchat/v1/envelope",
            Domain::Membership => "peerchat/v1/membership",
            Domain::Invite => "peerchat/v1/invite",
            Domain::Profile => "peerchat/v1/profile",
            Domain::Content => "peerchat/v1/content",
        }
    }
}

/// A byte string under construction for signing or hashing. The only way to make one starts with
/// a [`Domain`], so every signed byte string is domain-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBytes(Vec<u8>);

impl SignedBytes {
    /// Starts the byte string with the domain tag and a zero byte.
    pub fn new(domain: Domain) -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(domain.tag().as_bytes());
        bytes.push(0);
        Self(bytes)
    }

    /// Appends a field whose length is fixed by the layout (keys, signatures, nonces, digests).
    pub fn fixed(mut self, field: &[u8]) -> Self {
        self.0.extend_from_slice(field);
        self
    }

    /// Appends a variable-length field: its length as big-endian `u32`, then its bytes.
    #[allow(
        clippy::expect_used,
        reason = "every signed field is bounded by the protocol's limits, far below 4 GiB"
    )]
    pub fn variable(mut self, field: &[u8]) -> Self {
        let length = u32::try_from(field.len()).expect("signed fields are bounded far below 4 GiB");
        self.0.extend_from_slice(&length.to_be_bytes());
        self.0.extend_from_slice(field);
        self
    }

    pub fn u8(mut self, value: u8) -> Self {
        self.0.push(value);
        self
    }

    pub fn u32(mut self, value: u32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u64(mut self, value: u64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn signed_bytes_layout_is_tag_zero_then_fields() {
        let bytes = SignedBytes::new(Domain::Profile)
            .fixed(&[0xaa, 0xbb])
            .variable(b"hi")
            .u8(7)
            .u32(1)
            .u64(2);
        let mut expected = b"peerchat/v1/profile\0".to_vec();
        expected.extend_from_slice(&[0xaa, 0xbb, 0, 0, 0, 2, b'h', b'i', 7, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(bytes.as_bytes(), expected.as_slice());
    }

    #[test]
    fn every_domain_has_a_distinct_tag() {
        let domains: Vec<Domain> = Domain::SIGNING
            .into_iter()
            .chain([Domain::Content])
            .collect();
        let mut tags: Vec<_> = domains.iter().map(|domain| domain.tag()).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), domains.len());
    }
}
