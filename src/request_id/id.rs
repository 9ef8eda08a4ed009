//! The validated [`RequestId`] value and its error.

use std::{fmt, str::FromStr};

use http::HeaderValue;

/// A validated request ID: 1 to [`RequestId::MAX_LEN`] characters, each an ASCII letter, an
/// ASCII digit or one of `-_.:/+=@`.
///
/// Cloning is cheap (a reference count, no copy of the text): the ID wraps the
/// [`HeaderValue`] it was read from or made into, so it goes back into headers without
/// re-validation.
///
/// ```
/// use tower_bulwark::request_id::RequestId;
///
/// let id = RequestId::try_from("order-42:retry@edge").unwrap();
/// assert_eq!(id.as_str(), "order-42:retry@edge");
/// assert_eq!(id.to_string(), "order-42:retry@edge");
///
/// // Anything outside the safe set is refused, and the error says what is allowed.
/// let err = RequestId::try_from("<script>").unwrap_err();
/// assert!(err.to_string().contains("-_.:/+=@"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The longest ID accepted, in characters (= bytes, as only ASCII is allowed).
    pub const MAX_LEN: usize = 128;

    /// A fresh random (version 4) UUID in its hyphenated lower-case form.
    ///
    /// The random bits come from a thread-local userspace CSPRNG reseeded from the OS, so there
    /// is no system call per ID.
    #[must_use]
    pub fn new_v4() -> Self {
        Self::from_uuid(uuid::Uuid::new_v4())
    }

    /// A fresh time-ordered (version 7) UUID in its hyphenated lower-case form.
    ///
    /// IDs made in one process sort by creation time, which suits logs and database keys.
    #[must_use]
    pub fn new_v7() -> Self {
        Self::from_uuid(uuid::Uuid::now_v7())
    }

    /// An ID from text known to be valid, made at compile time (a static header value: no
    /// allocation, no reference count).
    pub(super) const fn from_static(text: &'static str) -> Self {
        Self(HeaderValue::from_static(text))
    }

    fn from_uuid(uuid: uuid::Uuid) -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid.hyphenated().encode_lower(&mut text);
        // One allocation that holds the text and its reference count: cloning the ID (into
        // the extensions, the response header) never needs another. A hyphenated UUID is
        // always a valid header value; the fallback only keeps this function free of panics.
        Self(
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text)).unwrap_or_else(|_| {
                HeaderValue::from_static("00000000-0000-0000-0000-000000000000")
            }),
        )
    }

    /// The ID as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Validation admits ASCII only, so this never falls back.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }

    /// The ID as a header value.
    #[must_use]
    pub fn as_header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The ID as an owned header value.
    #[must_use]
    pub fn into_header_value(self) -> HeaderValue {
        self.0
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for RequestId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<RequestId> for HeaderValue {
    fn from(id: RequestId) -> Self {
        id.0
    }
}

impl TryFrom<&str> for RequestId {
    type Error = InvalidRequestId;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        validate(value.as_bytes())?;
        HeaderValue::from_str(value)
            .map(Self)
            .map_err(|_| InvalidRequestId::new(Reason::Disallowed))
    }
}

impl TryFrom<String> for RequestId {
    type Error = InvalidRequestId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        validate(value.as_bytes())?;
        // Reuses the string's buffer.
        HeaderValue::try_from(value)
            .map(Self)
            .map_err(|_| InvalidRequestId::new(Reason::Disallowed))
    }
}

impl TryFrom<HeaderValue> for RequestId {
    type Error = InvalidRequestId;

    fn try_from(value: HeaderValue) -> Result<Self, Self::Error> {
        validate(value.as_bytes())?;
        Ok(Self(value))
    }
}

impl TryFrom<&HeaderValue> for RequestId {
    type Error = InvalidRequestId;

    #[inline]
    fn try_from(value: &HeaderValue) -> Result<Self, Self::Error> {
        validate(value.as_bytes())?;
        // A clone shares the received bytes: no copy on the hot path.
        Ok(Self(value.clone()))
    }
}

impl FromStr for RequestId {
    type Err = InvalidRequestId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s)
    }
}

/// The error returned when text is not a valid [`RequestId`].
///
/// It says why, and what is allowed, but never repeats the rejected input: that input is
/// untrusted and may be meant for a log injection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRequestId {
    reason: Reason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Empty,
    TooLong,
    Disallowed,
}

impl InvalidRequestId {
    const fn new(reason: Reason) -> Self {
        Self { reason }
    }
}

impl fmt::Display for InvalidRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            Reason::Empty => "is empty",
            Reason::TooLong => "is longer than 128 characters",
            Reason::Disallowed => "contains a disallowed character",
        };
        write!(
            f,
            "invalid request id: it {why}; a request id is 1 to 128 characters, each an ASCII \
             letter, an ASCII digit or one of `-_.:/+=@`"
        )
    }
}

impl std::error::Error for InvalidRequestId {}

/// Byte lookup table of the safe set, built at compile time so validation is one load per byte.
static ALLOWED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=' | b'@');
        b += 1;
    }
    table
};

/// Checks `bytes` against the length cap and the safe set.
#[inline]
pub(super) fn validate(bytes: &[u8]) -> Result<(), InvalidRequestId> {
    if bytes.is_empty() {
        return Err(InvalidRequestId::new(Reason::Empty));
    }
    if bytes.len() > RequestId::MAX_LEN {
        return Err(InvalidRequestId::new(Reason::TooLong));
    }
    // No early exit: a branch-free loop over at most 128 bytes is cheaper than a branch per
    // byte, and valid IDs (the common case) are read to the end either way.
    if bytes
        .iter()
        .fold(true, |ok, &b| ok & ALLOWED[usize::from(b)])
    {
        Ok(())
    } else {
        Err(InvalidRequestId::new(Reason::Disallowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let max = "a".repeat(128);
        let over = "a".repeat(129);
        let ok: &[&str] = &[
            "a",
            "Z",
            "0",
            &max,
            "550e8400-e29b-41d4-a716-446655440000",
            "-",
            "_",
            ".",
            ":",
            "/",
            "+",
            "=",
            "@",
            "aZ09-_.:/+=@",
            "dGVzdA==",
        ];
        for s in ok {
            let id = RequestId::try_from(*s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(id.as_str(), *s);
            assert_eq!(id.to_string(), *s);
            assert_eq!(RequestId::try_from(s.to_string()).unwrap(), id);
            assert_eq!(s.parse::<RequestId>().unwrap(), id);
            assert_eq!(
                RequestId::try_from(HeaderValue::from_str(s).unwrap()).unwrap(),
                id
            );
        }

        let bad: &[(&str, Reason)] = &[
            ("", Reason::Empty),
            (&over, Reason::TooLong),
            ("a b", Reason::Disallowed),
            (" a", Reason::Disallowed),
            ("a\tb", Reason::Disallowed),
            ("a\rb", Reason::Disallowed),
            ("a\nb", Reason::Disallowed),
            ("a\r\nX-Injected: 1", Reason::Disallowed),
            ("a\0b", Reason::Disallowed),
            ("a\x1bb", Reason::Disallowed),
            ("a\x7fb", Reason::Disallowed),
            ("\"quoted\"", Reason::Disallowed),
            ("it's", Reason::Disallowed),
            ("<script>", Reason::Disallowed),
            ("a;b", Reason::Disallowed),
            ("a,b", Reason::Disallowed),
            ("a\\b", Reason::Disallowed),
            ("%41", Reason::Disallowed),
            ("a{b}", Reason::Disallowed),
            ("ünïcode", Reason::Disallowed),
            ("日本", Reason::Disallowed),
            ("a\u{200b}b", Reason::Disallowed),
        ];
        for (s, reason) in bad {
            let err = RequestId::try_from(*s).unwrap_err();
            assert_eq!(err.reason, *reason, "{s:?}");
            assert_eq!(RequestId::try_from(s.to_string()).unwrap_err(), err);
            // The message says what is allowed and never echoes the input.
            let msg = err.to_string();
            assert!(msg.contains("1 to 128 characters"), "{msg}");
            if s.len() > 2 {
                assert!(!msg.contains(*s), "{msg} reflects {s:?}");
            }
        }
    }

    #[test]
    fn header_values_with_obs_text_are_refused() {
        let raw = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert!(RequestId::try_from(&raw).is_err());
        let over = HeaderValue::from_bytes(&[b'x'; 129]).unwrap();
        assert!(RequestId::try_from(over).is_err());
    }

    #[test]
    fn every_byte_outside_the_safe_set_is_refused() {
        for b in 0..=255u8 {
            let allowed = b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b);
            assert_eq!(validate(&[b]).is_ok(), allowed, "byte {b:#04x}");
        }
    }

    #[test]
    fn uuids_are_valid_and_distinct() {
        let a = RequestId::new_v4();
        let b = RequestId::new_v4();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(
            uuid::Uuid::parse_str(a.as_str()).unwrap().get_version_num(),
            4
        );
        assert!(validate(a.as_str().as_bytes()).is_ok());

        let c = RequestId::new_v7();
        let d = RequestId::new_v7();
        assert_eq!(
            uuid::Uuid::parse_str(c.as_str()).unwrap().get_version_num(),
            7
        );
        // Version 7 IDs from one process sort by creation.
        assert!(c.as_str() < d.as_str());
    }

    #[test]
    fn debug_shows_text() {
        let id = RequestId::try_from("abc").unwrap();
        assert_eq!(format!("{id:?}"), "RequestId(\"abc\")");
        assert_eq!(id, "abc");
        assert_eq!(HeaderValue::from(id.clone()), "abc");
        assert_eq!(id.as_header_value(), "abc");
        assert_eq!(id.into_header_value(), "abc");
    }
}
