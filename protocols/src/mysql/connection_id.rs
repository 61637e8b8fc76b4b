//! `CONNECTION_ID()` as the client knows it. The client was told an id in torpor's greeting;
//! each backend connection a session lands on has a thread id of its own, which changes at
//! every wake. Setting `pseudo_thread_id` would need SUPER (BINLOG REPLAY from MariaDB
//! 10.5.2), so instead each call of the built-in in a statement's text is replaced by the
//! client's id before the text reaches a backend.
//!
//! What is rewritten: `CONNECTION_ID()` in any case, with blanks and comments between the
//! name and `(` and inside `()`, in code and in executable comments (`/*! */`, `/*!50700 */`,
//! `/*M! */`: an unexecuted one loses nothing by the change). Not rewritten: strings, quoted
//! names, comments, `db.connection_id()` and `` `connection_id`() `` (stored functions), names
//! that merely contain the word, and any text with CREATE or ALTER in its code (a view,
//! routine, trigger, event or column default would keep the number forever) or a statement
//! that starts with KILL (`KILL CONNECTION_ID()` means the session's own backend connection).
//! Nor text in a string that becomes SQL later (`PREPARE s FROM '...'`, `EXECUTE IMMEDIATE`),
//! nor the body of a routine, trigger or view that already exists: those see the thread id.
//!
//! The call becomes `CAST(0000000042 AS UNSIGNED)`: on MariaDB 10.11 its column is what
//! CONNECTION_ID()'s is (LONG, UNSIGNED, NOT NULL, length 10, binary), where a bare `42` is
//! signed with length 2, and a bare integer in ORDER BY or GROUP BY would name a column. (MySQL
//! 8's CONNECTION_ID() is BIGINT UNSIGNED; this module is written for MariaDB.)
//!
//! Column names: the server names a select-list item without an alias after its text as
//! written, so an item holding a call gets an alias with that text (`` AS `CONNECTION_ID()` ``)
//! in every select list and RETURNING list, subqueries included (`SELECT * FROM (SELECT
//! CONNECTION_ID()) t` is named from the inner one). An item gets one only when it surely has
//! none: it ends in `)`, or its last operand follows an operator (`CONNECTION_ID()+0`,
//! `... IS NULL`), or in `END` of a CASE. Otherwise (an unusual ending such as `... INTERVAL 1
//! DAY`, or an alias budget spent on deeply nested items) the column is named after the
//! rewritten text. A `VALUES (CONNECTION_ID())` statement can't take aliases: its column too.
//!
//! The text is read as an ASCII-compatible character set (utf8mb4, latin1, ...): in sjis,
//! gbk, big5 or cp932 a multi-byte character can hold a byte that reads as `'` or `\`.

use super::sql::{Tok, Token, lex};

const NAME: &[u8] = b"connection_id";

/// SELECT's options before its first item.
const MODIFIERS: &[&[u8]] = &[
    b"ALL",
    b"DISTINCT",
    b"DISTINCTROW",
    b"HIGH_PRIORITY",
    b"STRAIGHT_JOIN",
    b"SQL_SMALL_RESULT",
    b"SQL_BIG_RESULT",
    b"SQL_BUFFER_RESULT",
    b"SQL_CACHE",
    b"SQL_NO_CACHE",
    b"SQL_CALC_FOUND_ROWS",
];

/// Words that end a select list at its own depth.
const LIST_ENDS: &[&[u8]] = &[
    b"FROM",
    b"INTO",
    b"WHERE",
    b"GROUP",
    b"HAVING",
    b"ORDER",
    b"LIMIT",
    b"OFFSET",
    b"FETCH",
    b"WINDOW",
    b"UNION",
    b"EXCEPT",
    b"INTERSECT",
    b"MINUS",
    b"FOR",
    b"LOCK",
    b"PROCEDURE",
];

/// Words after which an operand is part of the expression, not an alias.
const OPERATOR_WORDS: &[&[u8]] = &[
    b"AND",
    b"OR",
    b"XOR",
    b"NOT",
    b"IS",
    b"LIKE",
    b"REGEXP",
    b"RLIKE",
    b"DIV",
    b"MOD",
    b"BETWEEN",
    b"COLLATE",
    b"ESCAPE",
    b"WHEN",
    b"THEN",
    b"ELSE",
    b"CASE",
    b"INTERVAL",
    b"BINARY",
    b"SOUNDS",
];

/// Words that make the string after them a typed literal, not an alias.
const LITERAL_PREFIXES: &[&[u8]] = &[b"DATE", b"TIME", b"TIMESTAMP"];

/// The aliases may add at most this much, or three times the text's length if larger: each
/// nesting level of a subquery repeats the text inside it, which would grow with the square of
/// it. Three times is enough for every item of a flat list, backquotes doubled.
const MIN_ALIAS_BUDGET: usize = 4096;

/// The hot-path filter: the text may call CONNECTION_ID() only if it holds the name, in any
/// case. A scan for `_` and a look around each one; allocates nothing.
pub fn mentions(text: &[u8]) -> bool {
    const BEFORE: &[u8] = b"connection";
    const AFTER: &[u8] = b"id";
    let mut from = BEFORE.len();
    while let Some(p) = text
        .get(from..)
        .and_then(|t| t.iter().position(|&c| c == b'_'))
    {
        let at = from + p;
        if text[at - BEFORE.len()..at].eq_ignore_ascii_case(BEFORE)
            && text
                .get(at + 1..at + 1 + AFTER.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(AFTER))
        {
            return true;
        }
        from = at + 1;
    }
    false
}

/// `text` (a COM_QUERY or COM_STMT_PREPARE statement) with every call of the built-in
/// CONNECTION_ID() replaced by `id`, or None when there is nothing to replace. `backslash`:
/// strings take backslash escapes (the server's status flags say NO_BACKSLASH_ESCAPES is
/// off). Linear in the text; the result is at most about five times as long.
pub fn rewrite(text: &[u8], id: u32, backslash: bool) -> Option<Vec<u8>> {
    if !mentions(text) {
        return None;
    }
    let statements = lex(text, backslash);
    // Both words are reserved: outside strings and quoted names they are DDL, wherever they
    // stand (`SET STATEMENT ... FOR CREATE VIEW`).
    let ddl = |t: &Token| is(text, t, b"CREATE") || is(text, t, b"ALTER");
    let kill = |s: &Vec<Token>| s.first().is_some_and(|t| is(text, t, b"KILL"));
    if statements.iter().any(|s| kill(s) || s.iter().any(ddl)) {
        return None;
    }
    let mut edits = Edits {
        text,
        list: Vec::new(),
        budget: text.len().saturating_mul(3).max(MIN_ALIAS_BUDGET),
    };
    for s in &statements {
        edits.statement(s);
    }
    if !edits.list.iter().any(|e| matches!(e, Edit::Call { .. })) {
        return None;
    }
    Some(edits.apply(id))
}

enum Edit {
    /// The call at `start..end` becomes the id.
    Call { start: usize, end: usize },
    /// ` AS `name`` goes in at `at`.
    Alias { at: usize, name: Vec<u8> },
}

impl Edit {
    fn at(&self) -> usize {
        match self {
            Edit::Call { start, .. } => *start,
            Edit::Alias { at, .. } => *at,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum List {
    /// Not in a select list.
    #[default]
    None,
    /// After SELECT, before its first item.
    Modifiers,
    Items,
}

/// One level of parentheses.
#[derive(Default)]
struct Frame {
    list: List,
    /// The first token of the select-list item being read.
    item: usize,
    /// That item holds a call.
    item_call: bool,
    /// That item has a CASE of its own (not in parentheses).
    item_case: bool,
    /// Something in these parentheses holds a call.
    any_call: bool,
}

struct Edits<'a> {
    text: &'a [u8],
    /// In the order they were found; [`Edits::apply`] sorts them.
    list: Vec<Edit>,
    /// Bytes aliases may still add.
    budget: usize,
}

impl Edits<'_> {
    fn statement(&mut self, toks: &[Token]) {
        let text = self.text;
        let mut stack = vec![Frame::default()];
        let mut k = 0;
        while k < toks.len() {
            let t = &toks[k];
            let depth = stack.len();
            let Some(top) = stack.last_mut() else { return };
            if is_call(text, toks, k) {
                top.enter_item(k);
                top.item_call = true;
                top.any_call = true;
                self.list.push(Edit::Call {
                    start: t.start,
                    end: toks[k + 2].end,
                });
                k += 3;
                continue;
            }
            match t.tok {
                Tok::Punct(b'(') => {
                    top.enter_item(k);
                    stack.push(Frame::default());
                }
                Tok::Punct(b')') if depth > 1 => {
                    if let Some(mut inner) = stack.pop() {
                        self.close_item(&mut inner, toks, k);
                        if let Some(outer) = stack.last_mut() {
                            outer.item_call |= inner.any_call;
                            outer.any_call |= inner.any_call;
                        }
                    }
                }
                Tok::Punct(b',') if top.list == List::Items => {
                    self.close_item(top, toks, k);
                    top.item = k + 1;
                }
                Tok::Word if is(text, t, b"SELECT") || is(text, t, b"RETURNING") => {
                    self.close_item(top, toks, k);
                    top.list = List::Modifiers;
                }
                Tok::Word if top.list != List::None && LIST_ENDS.iter().any(|w| is(text, t, w)) => {
                    self.close_item(top, toks, k);
                    top.list = List::None;
                }
                Tok::Word
                    if top.list == List::Modifiers && MODIFIERS.iter().any(|w| is(text, t, w)) => {}
                _ => {
                    top.enter_item(k);
                    top.item_case |= is(text, t, b"CASE");
                }
            }
            k += 1;
        }
        while let Some(mut f) = stack.pop() {
            self.close_item(&mut f, toks, toks.len());
            if let Some(outer) = stack.last_mut() {
                outer.item_call |= f.any_call;
                outer.any_call |= f.any_call;
            }
        }
    }

    /// The frame's item ends before token `end`: it gets an alias if it holds a call and
    /// surely has none.
    fn close_item(&mut self, f: &mut Frame, toks: &[Token], end: usize) {
        let call = std::mem::take(&mut f.item_call);
        let case = std::mem::take(&mut f.item_case);
        if f.list != List::Items || !call {
            return;
        }
        let Some(item) = toks.get(f.item..end).filter(|i| !i.is_empty()) else {
            return;
        };
        let (Some(first), Some(last)) = (item.first(), item.last()) else {
            return;
        };
        if !needs_alias(self.text, item, case) {
            return;
        }
        // ` AS `, the quotes, and the name with its backquotes doubled, at most twice its
        // text: checked before the name is built, so a spent budget costs nothing more.
        let cost = 2 * (last.end - first.start) + 6;
        if cost > self.budget {
            return;
        }
        self.budget -= cost;
        let name = column_name(self.text, item);
        self.list.push(Edit::Alias { at: last.end, name });
    }

    fn apply(mut self, id: u32) -> Vec<u8> {
        // Stable: two aliases at one place (an unclosed parenthesis) keep their order.
        self.list.sort_by_key(Edit::at);
        let literal = format!("CAST({id:010} AS UNSIGNED)");
        let mut out = Vec::with_capacity(self.text.len() + 64);
        let mut from = 0;
        for e in &self.list {
            let at = e.at();
            if at < from {
                // Never happens: edits don't overlap. Skipping keeps the text whole if one did.
                continue;
            }
            out.extend_from_slice(&self.text[from..at]);
            match e {
                Edit::Call { end, .. } => {
                    out.extend_from_slice(literal.as_bytes());
                    from = *end;
                }
                Edit::Alias { name, .. } => {
                    out.extend_from_slice(b" AS `");
                    for &c in name {
                        if c == b'`' {
                            out.push(b'`');
                        }
                        out.push(c);
                    }
                    out.push(b'`');
                    from = at;
                }
            }
        }
        out.extend_from_slice(&self.text[from..]);
        out
    }
}

impl Frame {
    /// A token of the select list: after SELECT's options, the first item starts here.
    fn enter_item(&mut self, k: usize) {
        if self.list == List::Modifiers {
            self.list = List::Items;
            self.item = k;
            self.item_call = false;
            self.item_case = false;
        }
    }
}

fn is(text: &[u8], t: &Token, word: &[u8]) -> bool {
    t.tok == Tok::Word
        && text
            .get(t.start..t.end)
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

fn is_punct(t: Option<&Token>, c: u8) -> bool {
    t.is_some_and(|t| t.tok == Tok::Punct(c))
}

/// `connection_id ( )` at `k`, not qualified with a schema.
fn is_call(text: &[u8], toks: &[Token], k: usize) -> bool {
    is(text, &toks[k], NAME)
        && is_punct(toks.get(k + 1), b'(')
        && is_punct(toks.get(k + 2), b')')
        && !(k > 0 && is_punct(toks.get(k - 1), b'.'))
}

/// The select-list item surely has no alias of its own (see the module's doc).
/// `case`: the item has a CASE outside parentheses.
fn needs_alias(text: &[u8], item: &[Token], case: bool) -> bool {
    let n = item.len();
    let Some(last) = item.last() else {
        return false;
    };
    if last.tok == Tok::Punct(b')') {
        return true;
    }
    if is(text, last, b"END") {
        // CASE ... END, unless the END after another is an alias.
        return case && !(n >= 2 && is(text, &item[n - 2], b"END"));
    }
    // Where the last operand starts: a qualified name, a literal with its prefix.
    let mut o = n - 1;
    match &last.tok {
        Tok::Word | Tok::Quoted(_) => {
            while o >= 2
                && item[o - 1].tok == Tok::Punct(b'.')
                && matches!(item[o - 2].tok, Tok::Word | Tok::Quoted(_))
            {
                o -= 2;
            }
        }
        Tok::Str(_) => {
            if o >= 1
                && item[o - 1].tok == Tok::Word
                && (item[o - 1].end == last.start
                    || text.get(item[o - 1].start) == Some(&b'_')
                    || LITERAL_PREFIXES.iter().any(|w| is(text, &item[o - 1], w)))
            {
                o -= 1;
            }
        }
        Tok::UserVar(_) | Tok::SysVar | Tok::Punct(b'?') => {}
        _ => return false,
    }
    let Some(before) = o.checked_sub(1).map(|p| &item[p]) else {
        return false;
    };
    match before.tok {
        Tok::Punct(c) => b"+-*/%=<>!^&|~:".contains(&c),
        Tok::Word => OPERATOR_WORDS.iter().any(|w| is(text, before, w)),
        _ => false,
    }
}

/// How the server names the item: its text from first to last token, comments inside kept,
/// the markers of executable comments (`/*!50700`, `/*M!`, `*/`) left out.
fn column_name(text: &[u8], item: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, t) in item.iter().enumerate() {
        out.extend_from_slice(text.get(t.start..t.end).unwrap_or_default());
        if let Some(next) = item.get(i + 1) {
            strip_markers(text, t.end, next.start, &mut out);
        }
    }
    out
}

/// Copies the gap `text[from..to]` between two tokens (blanks and comments) without the
/// executable comments' markers.
fn strip_markers(text: &[u8], from: usize, to: usize, out: &mut Vec<u8>) {
    let gap = text.get(from..to).unwrap_or_default();
    let mut i = 0;
    while i < gap.len() {
        let rest = &gap[i..];
        if rest.starts_with(b"/*!") || rest.starts_with(b"/*M!") {
            i += if rest[2] == b'M' { 4 } else { 3 };
            while gap.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let end = rest[2..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(rest.len(), |p| p + 4);
            out.extend_from_slice(&rest[..end]);
            i += end;
        } else if rest.starts_with(b"*/") {
            i += 2;
        } else if rest[0] == b'#' || rest.starts_with(b"--") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(rest.len(), |p| p + 1);
            out.extend_from_slice(&rest[..end]);
            i += end;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests;
