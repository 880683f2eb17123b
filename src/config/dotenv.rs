//! A `.env` reader with python-dotenv's grammar.
//!
//! Hand-written because the seed's `.env` must load as python-dotenv reads it, and the Rust
//! crates disagree with it: `dotenvy` 0.15 rejects the unquoted `RATE_LIMIT=200 per day`
//! (`LineParse`, its issue #11). What python-dotenv 1.x does, and so what this does:
//! - `KEY=value`, optional `export ` prefix, spaces around `=` allowed;
//! - unquoted values run to the end of the line; a ` #` starts a comment; trailing
//!   whitespace is dropped; inner spaces are kept (`200 per day`);
//! - `'single'` quotes keep text as is (only `\'` and `\\` are escapes), `"double"` quotes
//!   decode `\n \t \" \\` and the like; both may span lines;
//! - `${NAME}` and `${NAME:-default}` expand from the process environment first, then
//!   from keys defined earlier in the file (python-dotenv's `override=False` order);
//! - a line it cannot parse is skipped and reported by line number (never its text, which
//!   may hold a secret); a key with no `=` is ignored.

use std::collections::HashMap;

/// What a `.env` file defined, in file order, plus the lines that could not be parsed.
#[derive(Debug, Default)]
pub struct DotenvFile {
    pub entries: Vec<(String, String)>,
    pub bad_lines: Vec<usize>,
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(c) if c == ' ' || c == '\t') {
            self.bump();
        }
    }
    /// Consumes up to and including the next line break.
    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }
    fn line_number(&self, at: usize) -> usize {
        self.text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1
    }
}

/// Parses the text of a `.env` file. `lookup` answers `${NAME}` from the process environment.
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> DotenvFile {
    let mut out = DotenvFile::default();
    let mut defined: HashMap<String, String> = HashMap::new();
    let mut cur = Cursor { text, pos: 0 };
    while cur.peek().is_some() {
        let start = cur.pos;
        match parse_binding(&mut cur) {
            Ok(Some((key, raw))) => {
                let value = expand(&raw, &|name| lookup(name).or_else(|| defined.get(name).cloned()));
                defined.insert(key.clone(), value.clone());
                out.entries.push((key, value));
            }
            Ok(None) => {}
            Err(()) => {
                out.bad_lines.push(cur.line_number(start));
                cur.pos = start;
                cur.skip_line();
            }
        }
    }
    out
}

/// One statement: a blank line, a comment, or `KEY=VALUE`. Leaves the cursor after its line.
fn parse_binding(cur: &mut Cursor) -> Result<Option<(String, String)>, ()> {
    cur.skip_blanks();
    match cur.peek() {
        None => return Ok(None),
        Some('\n') | Some('\r') | Some('#') => {
            cur.skip_line();
            return Ok(None);
        }
        _ => {}
    }
    if cur.rest().strip_prefix("export").is_some_and(|after| after.starts_with([' ', '\t'])) {
        cur.pos += "export".len();
        cur.skip_blanks();
    }
    let key = if cur.peek() == Some('\'') {
        cur.bump();
        let key: String = std::iter::from_fn(|| cur.bump()).take_while(|c| *c != '\'').collect();
        if key.is_empty() || key.contains('\n') {
            return Err(());
        }
        key
    } else {
        let len = cur.rest().find(|c: char| c == '=' || c == '#' || c.is_whitespace()).unwrap_or(cur.rest().len());
        let key = cur.rest().get(..len).unwrap_or("").to_string();
        cur.pos += len;
        key
    };
    if key.is_empty() {
        return Err(());
    }
    cur.skip_blanks();
    if cur.peek() != Some('=') {
        // python-dotenv binds a key without `=` to None; the environment has no such thing.
        end_of_line(cur)?;
        return Ok(None);
    }
    cur.bump();
    cur.skip_blanks();
    let value = match cur.peek() {
        Some(q @ ('\'' | '"')) => {
            cur.bump();
            let value = quoted(cur, q)?;
            end_of_line(cur)?;
            value
        }
        _ => {
            let len = cur.rest().find(['\n', '\r']).unwrap_or(cur.rest().len());
            let line = cur.rest().get(..len).unwrap_or("");
            cur.pos += len;
            cur.skip_line();
            strip_comment(line).trim_end().to_string()
        }
    };
    Ok(Some((key, value)))
}

/// python-dotenv: `re.sub(r"\s+#.*", "", value)`: a `#` after whitespace starts a comment.
fn strip_comment(line: &str) -> &str {
    let mut prev_space = false;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return line.get(..i).unwrap_or(line);
        }
        prev_space = c.is_whitespace();
    }
    line
}

fn quoted(cur: &mut Cursor, quote: char) -> Result<String, ()> {
    let mut value = String::new();
    loop {
        match cur.bump().ok_or(())? {
            c if c == quote => return Ok(value),
            '\\' => {
                let next = cur.bump().ok_or(())?;
                match (quote, next) {
                    (_, '\\') => value.push('\\'),
                    (_, '\'') => value.push('\''),
                    ('"', '"') => value.push('"'),
                    ('"', 'n') => value.push('\n'),
                    ('"', 't') => value.push('\t'),
                    ('"', 'r') => value.push('\r'),
                    ('"', 'a') => value.push('\u{7}'),
                    ('"', 'b') => value.push('\u{8}'),
                    ('"', 'f') => value.push('\u{c}'),
                    ('"', 'v') => value.push('\u{b}'),
                    (_, other) => {
                        value.push('\\');
                        value.push(other);
                    }
                }
            }
            c => value.push(c),
        }
    }
}

/// After a quoted value only blanks and a comment may follow on the line.
fn end_of_line(cur: &mut Cursor) -> Result<(), ()> {
    cur.skip_blanks();
    match cur.peek() {
        None | Some('\n') | Some('\r') | Some('#') => {
            cur.skip_line();
            Ok(())
        }
        _ => Err(()),
    }
}

/// Expands `${NAME}` and `${NAME:-default}`; an unknown name expands to its default or "".
fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest.get(start..).and_then(|r| r.find('}')) else {
            break;
        };
        let inner = rest.get(start + 2..start + len).unwrap_or("");
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.contains(':') {
            out.push_str(rest.get(..start + len + 1).unwrap_or(""));
        } else {
            out.push_str(rest.get(..start).unwrap_or(""));
            out.push_str(&lookup(name).or(default.map(str::to_string)).unwrap_or_default());
        }
        rest = rest.get(start + len + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_plain(text: &str) -> DotenvFile {
        parse(text, &|_| None)
    }

    fn get<'a>(f: &'a DotenvFile, key: &str) -> Option<&'a str> {
        f.entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn unquoted_values_keep_inner_spaces() {
        let f = parse_plain("RATE_LIMIT=200 per day\nB = two words  \n");
        assert_eq!(get(&f, "RATE_LIMIT"), Some("200 per day"));
        assert_eq!(get(&f, "B"), Some("two words"));
        assert!(f.bad_lines.is_empty());
    }

    #[test]
    fn comments_quotes_and_export() {
        let text = "# comment\n\nexport A=1 # trailing\nB='single # not a comment'\nC=\"line\\nbreak \\\"q\\\"\"\nD=a#b\nE=''\nF=\nG='it\\'s'\n";
        let f = parse_plain(text);
        assert_eq!(get(&f, "A"), Some("1"));
        assert_eq!(get(&f, "B"), Some("single # not a comment"));
        assert_eq!(get(&f, "C"), Some("line\nbreak \"q\""));
        assert_eq!(get(&f, "D"), Some("a#b"));
        assert_eq!(get(&f, "E"), Some(""));
        assert_eq!(get(&f, "F"), Some(""));
        assert_eq!(get(&f, "G"), Some("it's"));
    }

    #[test]
    fn multiline_quoted_values_and_crlf() {
        let f = parse_plain("KEY=\"first\nsecond\"\r\nNEXT=x\r\n");
        assert_eq!(get(&f, "KEY"), Some("first\nsecond"));
        assert_eq!(get(&f, "NEXT"), Some("x"));
    }

    #[test]
    fn bad_lines_are_skipped_and_reported_by_number() {
        let f = parse_plain("A=1\nB=\"unterminated\nC=3");
        assert_eq!(get(&f, "A"), Some("1"));
        assert_eq!(f.bad_lines, vec![2]);
        let f = parse_plain("A='x' junk\nB=2\n=nokey\n");
        assert_eq!(f.bad_lines, vec![1, 3]);
        assert_eq!(get(&f, "B"), Some("2"));
    }

    #[test]
    fn keys_without_equals_are_ignored() {
        let f = parse_plain("LONELY\nA=1\n");
        assert_eq!(f.entries, vec![("A".to_string(), "1".to_string())]);
        assert!(f.bad_lines.is_empty());
    }

    #[test]
    fn variables_expand_from_environment_first_then_file() {
        let env = |name: &str| (name == "HOME").then(|| "/root".to_string());
        let f = parse("HOME=/ignored\nA=${HOME}/x\nB=b\nC=${B}-${MISSING:-dflt}-${NONE}\n", &env);
        assert_eq!(get(&f, "A"), Some("/root/x"));
        assert_eq!(get(&f, "C"), Some("b-dflt-"));
    }

    #[test]
    fn the_seed_env_file_loads_verbatim() {
        let f = parse_plain(include_str!("../../tests/fixtures/seed.env"));
        assert!(f.bad_lines.is_empty());
        assert_eq!(get(&f, "RATE_LIMIT"), Some("200 per day"));
        assert_eq!(get(&f, "FLASK_SECRET_KEY"), Some("your-secret-key"));
        assert_eq!(get(&f, "DAIR_SECRET"), Some("base32secret3232"));
        assert_eq!(get(&f, "BOB_EMAIL"), Some("bob@example.com"));
        assert_eq!(get(&f, "EMAIL_SMTP_PORT"), Some("465"));
        assert_eq!(f.entries.len(), 13);
    }
}
