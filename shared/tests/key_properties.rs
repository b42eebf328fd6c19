//! Property tests: hostile filenames and ids thrown at the one key builder.

use proptest::prelude::*;
use rythmiq_shared::storage::{MAX_FILENAME, ObjectKey, ObjectKind, sanitize_filename};
use uuid::Uuid;

/// Names an attacker would try: traversal, separators, null bytes, URL and Unicode tricks, long
/// runs, mixed with arbitrary strings.
fn hostile_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("..".to_string()),
        Just("../".to_string()),
        Just("..\\".to_string()),
        Just("/".to_string()),
        Just("\\".to_string()),
        Just("\0".to_string()),
        Just("%2e%2e%2f".to_string()),
        Just("\u{2024}\u{2024}/".to_string()), // one-dot leaders
        Just("\u{FF0E}\u{FF0E}\u{FF0F}".to_string()), // full-width ./
        Just("~".to_string()),
        Just(".".to_string()),
        Just(" ".to_string()),
        Just("\n\r\t".to_string()),
        Just("photo.jpg".to_string()),
        Just("C:".to_string()),
        "[a-zA-Z0-9._-]{0,20}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn uuid_v4() -> impl Strategy<Value = Uuid> {
    any::<[u8; 16]>().prop_map(|b| uuid::Builder::from_random_bytes(b).into_uuid())
}

fn kind() -> impl Strategy<Value = ObjectKind> {
    prop_oneof![
        Just(ObjectKind::Raw),
        Just(ObjectKind::Master),
        Just(ObjectKind::Output)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_built_key_is_safe_and_round_trips(
        kind in kind(),
        user in uuid_v4(),
        id in uuid_v4(),
        ts in 0i64..=i64::MAX,
        name in hostile_name(),
    ) {
        let key = ObjectKey::build(rythmiq_shared::storage::KeyParts {
            kind, user_id: user, id, unix_ts: ts, filename: &name,
        });
        prop_assert!(key.is_ok(), "{name:?} rejected: {key:?}");
        let Ok(key) = key else { return Ok(()) };
        let s = key.as_str();
        prop_assert!(!s.starts_with('/'));
        prop_assert!(!s.contains(".."), "{s}");
        prop_assert!(!s.contains('\0'));
        prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b)), "{s}");
        prop_assert!(s.ends_with(".enc"));
        let parts: Vec<&str> = s.split('/').collect();
        prop_assert_eq!(parts.len(), 4);
        prop_assert_eq!(parts[0], kind.prefix());
        prop_assert_eq!(parts[1], user.to_string());
        prop_assert_eq!(parts[2], id.to_string());
        prop_assert!(parts.iter().all(|p| !p.is_empty() && *p != "."));
        // The leaf holds at most the timestamp, `_`, 128 filename characters and `.enc`.
        prop_assert!(parts[3].len() <= 20 + 1 + MAX_FILENAME + 4);

        let back = ObjectKey::parse(s);
        prop_assert!(back.is_ok(), "{s} does not parse back: {back:?}");
        let Ok(back) = back else { return Ok(()) };
        prop_assert_eq!(&back, &key);
        prop_assert_eq!(back.binding(), id);
        prop_assert_eq!(back.user_id(), user);
    }

    #[test]
    fn sanitising_is_bounded_safe_and_idempotent(name in hostile_name()) {
        let once = sanitize_filename(&name);
        prop_assert!(!once.is_empty() && once.len() <= MAX_FILENAME);
        prop_assert!(!once.starts_with('.') && !once.ends_with('.'));
        prop_assert!(!once.contains(".."));
        prop_assert!(once.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        prop_assert_eq!(sanitize_filename(&once), once);
    }

    #[test]
    fn ids_that_are_not_v4_are_refused(
        bytes in any::<[u8; 16]>(),
        version in 0u8..16,
        good in uuid_v4(),
    ) {
        prop_assume!(version != 4);
        let mut b = bytes;
        b[6] = (b[6] & 0x0F) | (version << 4);
        let not_v4 = Uuid::from_bytes(b);
        prop_assert!(ObjectKey::raw(not_v4, good, 1, "a.jpg").is_err());
        prop_assert!(ObjectKey::output(good, not_v4, 1, "a.jpg").is_err());
        prop_assert!(ObjectKey::master(good, not_v4).is_err());
    }

    #[test]
    fn arbitrary_strings_never_parse_into_unsafe_keys(s in any::<String>()) {
        if let Ok(key) = ObjectKey::parse(&s) {
            prop_assert_eq!(key.as_str(), s.as_str());
            prop_assert!(!s.contains("..") && !s.starts_with('/') && !s.contains('\0'));
        }
    }

    #[test]
    fn mutated_valid_keys_parse_only_if_canonical(
        user in uuid_v4(), id in uuid_v4(), name in "[a-z]{1,8}\\.jpg",
        at in 0usize..200, insert in prop_oneof![Just("/"), Just(".."), Just("\0"), Just("../"), Just("%"), Just(" ")],
    ) {
        let key = ObjectKey::raw(user, id, 1_700_000_000, &name);
        prop_assert!(key.is_ok());
        let Ok(key) = key else { return Ok(()) };
        let mut s = key.as_str().to_owned();
        let at = at.min(s.len());
        s.insert_str(at, insert);
        if let Ok(k) = ObjectKey::parse(&s) {
            prop_assert_eq!(k.as_str(), s.as_str());
            prop_assert!(!s.contains(".."));
        }
    }
}
