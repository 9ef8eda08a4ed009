//! `RequestId` validation on arbitrary bytes: accepted exactly when the input is 1 to 128
//! bytes, each an ASCII letter or digit or one of `-_.:/+=@`; an accepted ID reads back as
//! the input, through every constructor.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_bulwark::request_id::RequestId;

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b)
}

fn check(id: Result<RequestId, impl std::fmt::Display>, data: &[u8], expected: bool, via: &str) {
    match id {
        Ok(id) => {
            assert!(expected, "{via}: accepted {data:?}");
            assert_eq!(id.as_str().as_bytes(), data, "{via}: as_str");
            assert_eq!(
                id.as_header_value().as_bytes(),
                data,
                "{via}: as_header_value"
            );
            assert_eq!(id.to_string().as_bytes(), data, "{via}: Display");
            // Round trip: the text of an ID is itself a valid ID, equal to it.
            let again = RequestId::try_from(id.as_str()).expect("round trip");
            assert_eq!(again, id, "{via}: round trip");
            assert_eq!(
                RequestId::try_from(id.clone().into_header_value()).expect("header round trip"),
                id
            );
        }
        Err(err) => {
            assert!(!expected, "{via}: refused {data:?}");
            // The message never echoes the input (it may carry CR/LF or markup).
            let msg = err.to_string();
            assert!(!msg.contains('\r') && !msg.contains('\n'), "{via}: {msg:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let expected =
        (1..=RequestId::MAX_LEN).contains(&data.len()) && data.iter().all(|&b| allowed(b));

    if let Ok(text) = std::str::from_utf8(data) {
        check(RequestId::try_from(text), data, expected, "&str");
        check(
            RequestId::try_from(text.to_owned()),
            data,
            expected,
            "String",
        );
        check(text.parse::<RequestId>(), data, expected, "FromStr");
    } else {
        assert!(!expected);
    }

    // Header values may hold bytes that are not UTF-8 (obs-text): those must be refused too.
    if let Ok(value) = HeaderValue::from_bytes(data) {
        check(RequestId::try_from(&value), data, expected, "&HeaderValue");
        check(RequestId::try_from(value), data, expected, "HeaderValue");
    }
});
