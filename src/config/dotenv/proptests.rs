//! Property tests (proptest, 256 cases each; a failure is shrunk to a minimal input and
//! kept in `proptest-regressions/` to replay first): the `.env` grammar (python-dotenv's)
//! reads back what was written, and a whole file goes through the `Settings` reader.

use proptest::prelude::*;

use super::parse;
use crate::config::{EnvMap, Settings};
use crate::strategies::any_text;

#[derive(Debug, Clone, Copy)]
enum Quoting {
    None,
    Single,
    Double,
}

/// One `KEY=value` line as an operator might write it.
#[derive(Debug, Clone)]
struct Binding {
    key: String,
    value: String,
    quoting: Quoting,
    export: bool,
    spaced: bool,
    comment: bool,
}

fn binding() -> impl Strategy<Value = Binding> {
    (
        "[A-Za-z_][A-Za-z0-9_.]{0,15}",
        prop_oneof![any_text(), "[a-z0-9 #'\"\\\\$={}]{0,20}", "[ -~\n\t]{0,30}"],
        prop_oneof![Just(Quoting::None), Just(Quoting::Single), Just(Quoting::Double)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_filter("`${` always expands, in any quoting", |(_, value, ..)| !value.contains("${"))
        .prop_map(|(key, value, quoting, export, spaced, comment)| Binding {
            key,
            value,
            quoting,
            export,
            spaced,
            comment,
        })
}

/// Whether `value` reads back unchanged without quotes.
fn plain(value: &str) -> bool {
    let mut prev_space = false;
    let comment = value.chars().any(|c| {
        let starts = c == '#' && prev_space;
        prev_space = c.is_whitespace();
        starts
    });
    !comment
        && !value.contains(['\n', '\r'])
        && !value.starts_with(char::is_whitespace)
        && !value.ends_with(char::is_whitespace)
        && !value.starts_with(['\'', '"'])
}

fn render(b: &Binding) -> String {
    let value = match b.quoting {
        Quoting::None if plain(&b.value) => b.value.clone(),
        Quoting::Single => format!("'{}'", b.value.replace('\\', "\\\\").replace('\'', "\\'")),
        Quoting::None | Quoting::Double => {
            let mut out = String::from("\"");
            for c in b.value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    };
    let quoted = !matches!(b.quoting, Quoting::None) || !plain(&b.value);
    format!(
        "{}{}{}{value}{}",
        if b.export { "export " } else { "" },
        b.key,
        if b.spaced && b.key != "export" { " = " } else { "=" },
        if b.comment && (quoted || !value.is_empty()) { "  # a comment" } else { "" },
    )
}

proptest! {
    /// Any text: entries with keys, and bad lines that exist, in order.
    #[test]
    fn any_text_gives_entries_and_real_line_numbers(text in prop_oneof![any_text(), "[A-Z=#'\" \n\\\\${}x]{0,60}"]) {
        let file = parse(&text, &|_| None);
        let lines = text.matches('\n').count() + 1;
        prop_assert!(file.entries.iter().all(|(k, _)| !k.is_empty()));
        prop_assert!(file.bad_lines.windows(2).all(|w| w[0] < w[1]), "{:?}", file.bad_lines);
        prop_assert!(file.bad_lines.iter().all(|n| (1..=lines).contains(n)), "{:?} of {lines}", file.bad_lines);
    }

    /// A file written from bindings reads back to them, in every quoting, with `export`,
    /// comments, blank lines and either line ending.
    #[test]
    fn written_bindings_read_back(bindings in prop::collection::vec(binding(), 0..8), crlf in any::<bool>(),
                                  extra in prop::collection::vec(prop::sample::select(vec!["", "# note", "   ", "\t# x = 1"]), 0..8)) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for (i, b) in bindings.iter().enumerate() {
            if let Some(line) = extra.get(i) {
                text.push_str(line);
                text.push_str(eol);
            }
            text.push_str(&render(b));
            text.push_str(eol);
        }
        let file = parse(&text, &|_| None);
        let expected: Vec<(String, String)> = bindings.iter().map(|b| (b.key.clone(), b.value.clone())).collect();
        prop_assert_eq!(file.entries, expected, "{:?}", text);
        prop_assert!(file.bad_lines.is_empty(), "{:?} in {:?}", file.bad_lines, text);
    }

    /// A line that cannot be parsed is reported by its own number, counting the lines that
    /// quoted values span, and the lines around it still load.
    #[test]
    fn bad_lines_are_reported_by_number(bindings in prop::collection::vec(binding(), 1..6),
                                        bad_at in prop::collection::vec(any::<bool>(), 1..6)) {
        let mut text = String::new();
        let mut bad = Vec::new();
        for (b, bad_before) in bindings.iter().zip(bad_at.iter().cycle()) {
            if *bad_before {
                bad.push(text.matches('\n').count() + 1);
                text.push_str("= no key\n");
            }
            text.push_str(&render(b));
            text.push('\n');
        }
        let file = parse(&text, &|_| None);
        prop_assert_eq!(file.bad_lines, bad);
        prop_assert_eq!(file.entries.len(), bindings.len());
    }

    #[test]
    fn references_expand_from_the_environment_then_earlier_keys(value in "[a-z0-9 ]{0,10}", default in "[a-z0-9]{0,10}",
                                                                from_env in any::<bool>()) {
        let env_value = format!("env-{value}");
        let lookup = |name: &str| (from_env && name == "A").then(|| env_value.clone());
        let text = format!("A=\"{value}\"\nB=x${{A}}y\nC=${{MISSING:-{default}}}\nD='${{B}}'\n");
        let file = parse(&text, &lookup);
        let a = if from_env { env_value.clone() } else { value.clone() };
        let b = format!("x{a}y");
        prop_assert_eq!(&file.entries[1], &("B".to_string(), b.clone()));
        prop_assert_eq!(&file.entries[2], &("C".to_string(), default));
        prop_assert_eq!(&file.entries[3], &("D".to_string(), b));
    }

    /// A whole `.env` through start-up's reader: settings, or errors that each name a variable.
    #[test]
    fn any_dotenv_file_gives_settings_or_named_errors(text in prop_oneof![
        any_text(),
        prop::collection::vec(binding(), 0..6).prop_map(|bs| bs.iter().map(render).collect::<Vec<_>>().join("\n")),
        Just(include_str!("../../../tests/fixtures/seed.env").to_string()),
    ]) {
        let result = Settings::from_env(&EnvMap::from_dotenv_text(&text, Vec::new()));
        if let Err(errors) = result {
            prop_assert!(errors.0.iter().all(crate::config::ConfigError::is_clear), "{errors:?}");
        }
    }
}
