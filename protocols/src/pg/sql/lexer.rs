//! A small SQL lexer, good enough to find statement boundaries and keywords. It is not a
//! parser: it only knows strings, quoted identifiers, dollar quotes, comments and parentheses.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token<'a> {
    /// Unquoted word (keyword or identifier), as written.
    Word(&'a str),
    /// `"..."` identifier, unescaped.
    Quoted(String),
    /// Any literal (string, dollar-quoted, number) or operator character.
    Other,
    Dot,
    Semicolon,
    Open,
    Close,
}

/// Tokenizer over SQL text. `backslash_strings` is true when `standard_conforming_strings` is
/// off (plain '...' strings then take backslash escapes).
#[derive(Clone)]
pub(super) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    /// Where the last returned token began.
    start: usize,
    backslash_strings: bool,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str, backslash_strings: bool) -> Self {
        Lexer {
            src,
            pos: 0,
            start: 0,
            backslash_strings,
        }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn token_start(&self) -> usize {
        self.start
    }

    /// The value of the last token if it was a plain `'...'` string (no prefix, no backslash
    /// escapes): what a literal function argument spells.
    pub(super) fn plain_string(&self) -> Option<String> {
        let text = self.src.get(self.start..self.pos)?;
        let body = text.strip_prefix('\'')?.strip_suffix('\'')?;
        if self.backslash_strings && body.contains('\\') {
            return None;
        }
        Some(body.replace("''", "'"))
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn skip_space_and_comments(&mut self) {
        let b = self.bytes();
        loop {
            while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if b[self.pos..].starts_with(b"--") {
                while self.pos < b.len() && b[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if b[self.pos..].starts_with(b"/*") {
                // Block comments nest in PostgreSQL.
                let mut depth = 0usize;
                while self.pos < b.len() {
                    if b[self.pos..].starts_with(b"/*") {
                        depth += 1;
                        self.pos += 2;
                    } else if b[self.pos..].starts_with(b"*/") {
                        depth -= 1;
                        self.pos += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
            } else {
                return;
            }
        }
    }

    /// Skips a '...' string whose opening quote is at `self.pos`.
    fn skip_string(&mut self, backslash: bool) {
        let b = self.bytes();
        self.pos += 1;
        while self.pos < b.len() {
            match b[self.pos] {
                b'\\' if backslash => self.pos += 2,
                b'\'' if b.get(self.pos + 1) == Some(&b'\'') => self.pos += 2,
                b'\'' => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
        self.pos = b.len();
    }

    /// Dollar quote starting at `self.pos` (a `$`), if it is one: returns true after skipping it.
    fn skip_dollar_quote(&mut self) -> bool {
        let b = self.bytes();
        let start = self.pos;
        let mut end = start + 1;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] >= 0x80)
        {
            end += 1;
        }
        if end >= b.len() || b[end] != b'$' {
            return false;
        }
        // A tag cannot start with a digit ($1 is a parameter).
        if end > start + 1 && b[start + 1].is_ascii_digit() {
            return false;
        }
        let tag = &b[start..=end];
        let body = end + 1;
        match find(&b[body..], tag) {
            Some(i) => self.pos = body + i + tag.len(),
            None => self.pos = b.len(),
        }
        true
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.skip_space_and_comments();
        let b = self.bytes();
        let c = *b.get(self.pos)?;
        let start = self.pos;
        self.start = start;
        let tok = match c {
            b';' => {
                self.pos += 1;
                Token::Semicolon
            }
            b'(' => {
                self.pos += 1;
                Token::Open
            }
            b')' => {
                self.pos += 1;
                Token::Close
            }
            b'.' if !b.get(self.pos + 1).is_some_and(u8::is_ascii_digit) => {
                self.pos += 1;
                Token::Dot
            }
            b'\'' => {
                self.skip_string(self.backslash_strings);
                Token::Other
            }
            b'"' => {
                let mut name = String::new();
                self.pos += 1;
                let mut seg = self.pos;
                while self.pos < b.len() {
                    if b[self.pos] == b'"' {
                        name.push_str(&self.src[seg..self.pos]);
                        if b.get(self.pos + 1) == Some(&b'"') {
                            name.push('"');
                            self.pos += 2;
                            seg = self.pos;
                            continue;
                        }
                        self.pos += 1;
                        return Some(Token::Quoted(name));
                    }
                    self.pos += 1;
                }
                Token::Other
            }
            b'$' => {
                if !self.skip_dollar_quote() {
                    self.pos += 1;
                    while self.pos < b.len() && b[self.pos].is_ascii_digit() {
                        self.pos += 1;
                    }
                }
                Token::Other
            }
            c if is_ident_start(c) => {
                while self.pos < b.len() && is_ident_char(b[self.pos]) {
                    self.pos += 1;
                }
                let word = &self.src[start..self.pos];
                if b.get(self.pos) == Some(&b'\'') {
                    // E'...', B'...', X'...', N'...', U&'...' handled below/as plain strings.
                    let backslash = word.eq_ignore_ascii_case("e") || self.backslash_strings;
                    self.skip_string(backslash);
                    Token::Other
                } else if word.eq_ignore_ascii_case("u") && b[self.pos..].starts_with(b"&'") {
                    self.pos += 1;
                    self.skip_string(false);
                    Token::Other
                } else {
                    Token::Word(word)
                }
            }
            _ => {
                // Numbers and operators; step one UTF-8 character.
                self.pos += self.src[self.pos..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
                Token::Other
            }
        };
        Some(tok)
    }
}

/// An identifier as the catalogs store it: unquoted words are ASCII-lowercased, and both
/// forms are truncated to NAMEDATALEN-1 (63) bytes.
pub(super) fn ident_name(tok: &Token<'_>) -> Option<String> {
    let name = match tok {
        Token::Word(w) => w.to_ascii_lowercase(),
        Token::Quoted(q) => q.clone(),
        _ => return None,
    };
    Some(truncate_name(name))
}

fn truncate_name(mut name: String) -> String {
    if name.len() > 63 {
        let mut cut = 63;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

pub(super) fn is_kw(tok: &Token<'_>, kw: &str) -> bool {
    matches!(tok, Token::Word(w) if w.eq_ignore_ascii_case(kw))
}

/// Leaves the lexer after the next semicolon at parenthesis depth 0 (counting from `depth`).
pub(super) fn skip_to_semicolon(lx: &mut Lexer<'_>, mut depth: usize) {
    for t in lx.by_ref() {
        match t {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            Token::Semicolon if depth == 0 => return,
            _ => {}
        }
    }
}
