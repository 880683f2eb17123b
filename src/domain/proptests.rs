//! Property tests (proptest, 256 cases each; a failure is shrunk to a minimal input and
//! kept in `proptest-regressions/` to replay first): every parser of a value from outside
//! (usernames, codes, email addresses, Telegram chats) never panics and gives a value or a
//! clear error.

use std::str::FromStr;

use proptest::prelude::*;

use super::{EmailAddress, OtpCode, TelegramChat, USERNAME_MAX_LEN, Username};
use crate::strategies::{any_text, mangle_case, valid_email, valid_username};

proptest! {
    #[test]
    fn usernames_parse_or_explain(raw in any_text()) {
        match Username::parse(&raw) {
            Ok(name) => {
                let s = name.as_str();
                prop_assert!(!s.is_empty() && s.chars().count() <= USERNAME_MAX_LEN);
                prop_assert_eq!(s, raw.trim().to_ascii_lowercase());
                prop_assert_eq!(Username::parse(s), Ok(name.clone()), "parse -> as_str -> parse");
                prop_assert_eq!(name.to_string(), s);
            }
            Err(e) => prop_assert!(e.starts_with("username "), "{e}"),
        }
    }

    #[test]
    fn valid_usernames_survive_case_and_blanks(name in valid_username(), upper in prop::collection::vec(any::<bool>(), 1..8),
                                               pad in "[ \t]{0,3}") {
        let parsed = Username::parse(&name).unwrap();
        prop_assert_eq!(parsed.as_str(), name.as_str());
        let noisy = format!("{pad}{}{pad}", mangle_case(&name, &upper));
        prop_assert_eq!(Username::parse(&noisy).unwrap(), parsed);
    }

    #[test]
    fn codes_are_their_digits_whatever_the_spacing(digits in "[0-9]{6,8}", spaces in prop::collection::vec(0usize..9, 0..4)) {
        let mut spaced = digits.clone();
        for at in spaces {
            spaced.insert(at.min(spaced.len()), ' ');
        }
        let code = OtpCode::parse(&spaced).unwrap();
        prop_assert_eq!(code.as_str(), digits.as_str());
        prop_assert!(!format!("{code:?}").contains(&digits), "Debug never shows the code");
    }

    #[test]
    fn codes_accept_only_six_to_eight_digits(raw in any_text()) {
        match OtpCode::parse(&raw) {
            Ok(code) => {
                prop_assert!((6..=8).contains(&code.as_str().len()));
                prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    /// An accepted address is one lettre can send to, unchanged: otherwise `/send` would take
    /// it with 200-class validation and fail at delivery with a 502.
    #[test]
    fn accepted_email_addresses_are_deliverable_as_given(raw in prop_oneof![any_text(), valid_email(),
                                                          "[ -~]{1,12}@[ -~]{1,12}"]) {
        match EmailAddress::parse(&raw) {
            Ok(addr) => {
                prop_assert_eq!(addr.as_str(), raw.trim());
                prop_assert_eq!(EmailAddress::parse(addr.as_str()), Ok(addr.clone()));
                let mailbox = lettre::message::Mailbox::from_str(addr.as_str());
                prop_assert!(mailbox.is_ok(), "lettre refuses {:?}", addr.as_str());
                let mailbox = mailbox.unwrap();
                prop_assert!(mailbox.name.is_none());
                prop_assert_eq!(mailbox.email.to_string(), addr.as_str());
            }
            Err(e) => prop_assert!(e.contains("is not an email address"), "{e}"),
        }
    }

    #[test]
    fn usual_email_addresses_are_accepted(addr in valid_email()) {
        prop_assert_eq!(EmailAddress::parse(&addr).map(|a| a.as_str().to_string()), Ok(addr));
    }

    #[test]
    fn telegram_chats_parse_or_explain(raw in any_text()) {
        match TelegramChat::parse(&raw) {
            Ok(chat) => {
                prop_assert_eq!(chat.as_str(), raw.trim());
                prop_assert_eq!(TelegramChat::parse(chat.as_str()), Ok(chat.clone()));
            }
            Err(e) => prop_assert!(e.contains("is not a Telegram chat id or @channel"), "{e}"),
        }
    }

    #[test]
    fn every_telegram_chat_id_and_channel_name_is_accepted(id in any::<i64>(), channel in "@[A-Za-z0-9_]{5,32}") {
        prop_assert_eq!(TelegramChat::parse(&id.to_string()).unwrap().as_str().to_string(), id.to_string());
        prop_assert_eq!(TelegramChat::parse(&channel).unwrap().as_str().to_string(), channel);
    }
}
