//! The one pass over a large manifest's TOML events (`toml_parser`, the parser under the
//! `toml` crate) that finds its plain `[[egress.allow]]` and `[[egress.deny]]` entries and
//! reads them, and refuses the whole text when taking them out could change what the rest
//! means.
//!
//! A plain entry has only `cidr`, `domain`, `proto` (strings), `inspect` (a boolean) and
//! `ports` (a flat array of strings and decimal integers), each at most once, under single
//! keys, and no later header below it (`[[egress.allow.http]]`). Anything else leaves the
//! entry in the text for `toml`.
//!
//! The removal could change the meaning of the rest when the rest names `egress` as a root
//! key (an inline table or dotted key), has `allow` or `deny` keys in `[egress]`, has
//! `[egress.allow]` or `[egress.deny]` as plain tables or `[[egress]]`, or has a header
//! below a list before that list's first entry: such texts are refused whole. So are texts
//! with any TOML error, which `toml` then reports.

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml_parser::decoder::Encoding;
use toml_parser::lexer::TokenKind;
use toml_parser::parser::{EventReceiver, RecursionGuard, ValidateWhitespace};
use toml_parser::{ErrorSink, ParseError, Raw, Source, Span};

use crate::schema::RawRule;

mod values;

use values::empty_rule;

/// The nesting `toml` allows (its own limit, so that this pass refuses what it refuses).
const MAX_DEPTH: u32 = 80;

/// Tokens handed to the parser at a time (a run ends at the next top-level newline).
const RUN_TOKENS: usize = 64 * 1024;

/// The plain entries of a text and where they are.
#[derive(Default)]
pub(crate) struct Plain {
    /// `[[egress.allow]]` entries in text order, each spanned by its header as `toml`
    /// spans it.
    pub allow: Vec<Spanned<RawRule>>,
    /// `[[egress.deny]]` entries, likewise.
    pub deny: Vec<Spanned<RawRule>>,
    /// The bytes of every entry above, from its header to the next header (or the end of
    /// the text), in text order.
    pub bytes: Vec<Range<usize>>,
}

/// The plain entries of `src`, or `None` when the text has a TOML error or something that
/// their removal could hide from `toml` (see the module docs).
pub(crate) fn plain_entries(src: &str) -> Option<Plain> {
    let source = Source::new(src);
    let mut scanner = Scanner::new(source);
    // Room for every entry at once: a rule is a few hundred bytes, and growing a vector of
    // 200 000 of them copies it again and again. The counts are an upper bound (a header
    // may sit in a string or a comment) and cost a fast substring search.
    scanner
        .allow
        .reserve(src.matches("[[egress.allow]]").count());
    scanner.deny.reserve(src.matches("[[egress.deny]]").count());
    let mut errors = Failed(false);
    {
        let mut validate = ValidateWhitespace::new(&mut scanner, source);
        let mut guard = RecursionGuard::new(&mut validate, MAX_DEPTH);
        // The parser takes a slice of tokens. All of them at once would be some 100 MB
        // for 200 000 entries, so it gets them in runs of whole lines: a TOML document is
        // expressions separated by newlines, and a newline outside every bracket ends one
        // (strings and comments, brackets and all, are single tokens). Valid runs make a
        // valid document, and their events are the document's.
        let mut run = Vec::with_capacity(RUN_TOKENS + 1024);
        let mut depth: i64 = 0;
        for token in source.lex() {
            match token.kind() {
                TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                // More closing than opening brackets: not TOML; `toml` says why.
                return None;
            }
            let ends_run =
                token.kind() == TokenKind::Newline && depth == 0 && run.len() >= RUN_TOKENS;
            run.push(token);
            if ends_run {
                toml_parser::parser::parse_document(&run, &mut guard, &mut errors);
                run.clear();
            }
        }
        toml_parser::parser::parse_document(&run, &mut guard, &mut errors);
    }
    if errors.0 || scanner.refused {
        return None;
    }
    scanner.close_block(src.len());
    Some(scanner.finish())
}

/// Records that some error was reported; which one does not matter, since the caller then
/// reads the text with `toml`, which reports it.
struct Failed(bool);

impl ErrorSink for Failed {
    fn report_error(&mut self, _error: ParseError) {
        self.0 = true;
    }
}

/// Which list an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Allow,
    Deny,
}

/// The table the key/value pairs being read belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// Before the first header.
    Root,
    /// `[egress]`.
    Egress,
    /// The `[[egress.allow]]` or `[[egress.deny]]` entry at this index of `blocks`.
    Block(usize),
    /// Any other table.
    Other,
}

/// One `[[egress.allow]]` or `[[egress.deny]]` entry of the text.
struct Block {
    list: List,
    /// Its rule's index in `Scanner::allow` or `Scanner::deny`.
    index: usize,
    /// From the header to the next header (or the end of the text).
    bytes: Range<usize>,
    /// Whether it is still plain.
    plain: bool,
}

/// A key or scalar token: its span and how it is quoted.
type Item = (Span, Option<Encoding>);

/// A value being read at the top of a key/value pair.
enum Value {
    Scalar(Item),
    /// An array: its `[`…`]` span (once closed) and whether it holds arrays or tables.
    /// Its scalars are in `Scanner::items`.
    Array {
        span: Span,
        nested: bool,
    },
    /// An inline table, or nothing yet.
    Other,
}

/// Follows the event stream of the whole document (see the module docs).
struct Scanner<'i> {
    source: Source<'i>,
    refused: bool,
    table: Table,
    /// A header being read: whether it is an array table, and its `[`/`[[` span. Its
    /// keys are in `keys`.
    header: Option<(bool, Span)>,
    /// The keys of the header or depth-0 key/value pair being read.
    keys: Vec<Item>,
    /// The value after `=` at depth 0, while it is read.
    value: Option<Value>,
    /// The scalars of the depth-0 array being read.
    items: Vec<Item>,
    /// Array and inline-table nesting.
    depth: u32,
    blocks: Vec<Block>,
    allow: Vec<Spanned<RawRule>>,
    deny: Vec<Spanned<RawRule>>,
    /// The last block of each list, for headers below it.
    last_allow: Option<usize>,
    last_deny: Option<usize>,
}

impl<'i> Scanner<'i> {
    fn new(source: Source<'i>) -> Self {
        Scanner {
            source,
            refused: false,
            table: Table::Root,
            header: None,
            keys: Vec::new(),
            value: None,
            items: Vec::new(),
            depth: 0,
            blocks: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            last_allow: None,
            last_deny: None,
        }
    }

    /// The plain entries and their bytes, in text order.
    fn finish(self) -> Plain {
        let mut keep_allow = Vec::with_capacity(self.allow.len());
        let mut keep_deny = Vec::with_capacity(self.deny.len());
        let mut bytes = Vec::with_capacity(self.blocks.len());
        for b in self.blocks {
            // A list's rules are in the order of its blocks.
            match b.list {
                List::Allow => keep_allow.push(b.plain),
                List::Deny => keep_deny.push(b.plain),
            }
            if b.plain {
                bytes.push(b.bytes);
            }
        }
        let (mut allow, mut deny) = (self.allow, self.deny);
        // `retain` moves nothing while every rule is kept, the common case.
        let mut keep = keep_allow.into_iter();
        allow.retain(|_| keep.next().unwrap_or(false));
        let mut keep = keep_deny.into_iter();
        deny.retain(|_| keep.next().unwrap_or(false));
        Plain { allow, deny, bytes }
    }

    fn raw(&self, (span, encoding): Item) -> Option<Raw<'i>> {
        let text = self.source.input().get(span.start()..span.end())?;
        Some(Raw::new_unchecked(text, encoding, span))
    }

    /// A key's name. A bare key is taken as written, undecoded: the names that matter here
    /// are valid bare keys, so a key written otherwise never matches one, stays in the text,
    /// and `toml` checks it.
    fn key(&self, item: Item, error: &mut dyn ErrorSink) -> Cow<'i, str> {
        let Some(raw) = self.raw(item) else {
            return Cow::Borrowed("");
        };
        if item.1.is_none() {
            return Cow::Borrowed(raw.as_str());
        }
        let mut out = Cow::Borrowed("");
        raw.decode_key(&mut out, error);
        out
    }

    fn close_block(&mut self, at: usize) {
        if let Table::Block(i) = self.table {
            self.blocks[i].bytes.end = at;
        }
    }

    fn last_of(&mut self, list: List) -> &mut Option<usize> {
        match list {
            List::Allow => &mut self.last_allow,
            List::Deny => &mut self.last_deny,
        }
    }

    fn end_header(&mut self, close: Span, error: &mut dyn ErrorSink) {
        let Some((array, open)) = self.header.take() else {
            return;
        };
        self.close_block(open.start());
        let keys = std::mem::take(&mut self.keys);
        let name = |i: usize, error: &mut dyn ErrorSink| match keys.get(i) {
            Some(&k) => self.key(k, error),
            None => Cow::Borrowed(""),
        };
        let (first, second) = (name(0, error), name(1, error));
        let list = match second.as_ref() {
            "allow" => Some(List::Allow),
            "deny" => Some(List::Deny),
            _ => None,
        };
        self.table = match (first.as_ref(), keys.len(), list, array) {
            ("egress", 1, _, false) => Table::Egress,
            ("egress", 2, Some(list), true) => self.new_block(list, open.start()..close.end()),
            ("egress", 1, _, true) | ("egress", 2, Some(_), false) => {
                self.refused = true;
                Table::Other
            }
            ("egress", _, Some(list), _) => {
                match *self.last_of(list) {
                    // It extends the last entry of its list: that one stays with `toml`.
                    Some(i) => self.blocks[i].plain = false,
                    // It makes the list a table, which later entries would not fit.
                    None => self.refused = true,
                }
                Table::Other
            }
            _ => Table::Other,
        };
        self.keys = keys;
        self.keys.clear();
    }

    fn new_block(&mut self, list: List, header: Range<usize>) -> Table {
        let rules = match list {
            List::Allow => &mut self.allow,
            List::Deny => &mut self.deny,
        };
        let index = rules.len();
        rules.push(Spanned::new(header.clone(), empty_rule()));
        let i = self.blocks.len();
        self.blocks.push(Block {
            list,
            index,
            bytes: header.start..header.end,
            plain: true,
        });
        *self.last_of(list) = Some(i);
        Table::Block(i)
    }

    /// A key/value pair at depth 0 is complete.
    fn end_pair(&mut self, error: &mut dyn ErrorSink) {
        let value = self.value.take().unwrap_or(Value::Other);
        let Some(&first) = self.keys.first() else {
            return;
        };
        match self.table {
            Table::Root => {
                if self.key(first, error) == "egress" {
                    self.refused = true;
                }
            }
            Table::Egress => {
                if matches!(self.key(first, error).as_ref(), "allow" | "deny") {
                    self.refused = true;
                }
            }
            Table::Block(i) if self.blocks[i].plain => {
                let plain = self.keys.len() == 1 && self.fill(i, first, value, error);
                self.blocks[i].plain = plain;
            }
            Table::Block(_) | Table::Other => {}
        }
        self.keys.clear();
        self.items.clear();
    }
}

impl EventReceiver for Scanner<'_> {
    fn std_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        self.header = Some((false, span));
        self.keys.clear();
    }

    fn array_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        self.header = Some((true, span));
        self.keys.clear();
    }

    fn std_table_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.end_header(span, error);
    }

    fn array_table_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.end_header(span, error);
    }

    fn simple_key(&mut self, span: Span, encoding: Option<Encoding>, _error: &mut dyn ErrorSink) {
        if self.header.is_some() || self.depth == 0 {
            self.keys.push((span, encoding));
        }
    }

    fn key_val_sep(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        if self.depth == 0 {
            self.value = None;
            self.items.clear();
        }
    }

    fn scalar(&mut self, span: Span, encoding: Option<Encoding>, error: &mut dyn ErrorSink) {
        match (&mut self.value, self.depth) {
            (_, 0) => {
                self.value = Some(Value::Scalar((span, encoding)));
                self.end_pair(error);
            }
            (Some(Value::Array { .. }), 1) => self.items.push((span, encoding)),
            (Some(Value::Array { nested, .. }), _) => *nested = true,
            _ => {}
        }
    }

    fn array_open(&mut self, span: Span, _error: &mut dyn ErrorSink) -> bool {
        if self.depth == 0 {
            self.value = Some(Value::Array {
                span,
                nested: false,
            });
        } else if let Some(Value::Array { nested, .. }) = &mut self.value {
            *nested = true;
        }
        self.depth += 1;
        true
    }

    fn array_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            if let Some(Value::Array { span: open, .. }) = &mut self.value {
                *open = open.append(span);
            }
            self.end_pair(error);
        }
    }

    fn inline_table_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) -> bool {
        if self.depth == 0 {
            self.value = Some(Value::Other);
        } else if let Some(Value::Array { nested, .. }) = &mut self.value {
            *nested = true;
        }
        self.depth += 1;
        true
    }

    fn inline_table_close(&mut self, _span: Span, error: &mut dyn ErrorSink) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.end_pair(error);
        }
    }
}
