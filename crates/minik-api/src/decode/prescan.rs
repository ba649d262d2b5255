//! A linear pre-scan of YAML text that bounds what serde_yaml's parser (libyaml) will spend on
//! it, before it sees it.
//!
//! libyaml keeps one "simple key" slot per open flow collection (`[` or `{`) and looks at every
//! slot at every token, so a text that opens n flow collections costs it n² steps before
//! serde_yaml's recursion limit (128) is ever checked: 160 KB of `[` took 27 s of CPU. And every
//! node costs serde_yaml up to a microsecond, ten to fifty times what serde_json spends. The
//! pre-scan refuses, in one pass over the bytes, a text that nests more collections than
//! serde_yaml accepts ([`MAX_DEPTH`]) or (for a request body) whose document holds more than
//! [`MAX_NODES`] nodes, and tells how many nodes and scalar bytes the text holds, which sizes
//! the budget for what its aliases may expand to.
//!
//! To count exactly what libyaml counts it follows libyaml's scanner (unsafe-libyaml 0.2, a
//! translation of libyaml 0.2.5): the flow level, the stack of block indentations, the simple
//! key of each flow level, and where scalars, comments, tags, anchors and directives begin and
//! end. It must never count fewer open collections than libyaml (the cost would come back) and
//! should never count more on a text libyaml reads without error (a valid manifest would be
//! refused); `tests/no_panic.rs` checks both against libyaml's own scanner. Where libyaml stops
//! with an error the pre-scan carries on: libyaml reads no further, so nothing counted past that
//! point can hide a cost, and serde_yaml refuses such a text anyway.

use super::DecodeError;

/// The deepest nesting of collections serde_yaml (and serde_json) accepts: its recursion limit.
pub const MAX_DEPTH: usize = 128;

/// The most nodes one YAML document of a request body may hold: scalars, collections and
/// aliases, and each entry (`-`, `?`, `:`), which holds a value even when none is written.
/// Parsing a node costs serde_yaml 0.3-1 µs, so this bounds a body's parse to well under 0.1 s
/// however it is written; a real object has a few thousand nodes at most, and larger ones can
/// be sent as JSON, which has no such limit.
pub const MAX_NODES: usize = 1 << 16;

/// The UTF-8 byte order mark, which libyaml skips at the start of the stream and of any line.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a YAML text holds, as the pre-scan counted it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Size {
    /// Scalars, collections, aliases and entries (see [`MAX_NODES`]), in all its documents.
    pub nodes: usize,
    /// The bytes of its scalars (keys and values), as written.
    pub scalar_bytes: usize,
    /// Where plain scalar values are YAML 1.1 octal integers (`0644`, `-017`): the offset of
    /// their leading `0`. Kubernetes reads YAML 1.1 (go-yaml), where `mode: 0400` is 256;
    /// serde_yaml reads YAML 1.2, where it is the string "0400" ([`yaml11_octals`] rewrites
    /// them to 1.2's `0o400`).
    pub octals: Vec<usize>,
}

/// `text` with each YAML 1.1 octal integer the pre-scan found written the YAML 1.2 way
/// (`0400` → `0o400`), so that serde_yaml reads the number Kubernetes reads.
pub fn yaml11_octals<'a>(text: &'a str, size: &Size) -> std::borrow::Cow<'a, str> {
    if size.octals.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + size.octals.len());
    let mut from = 0;
    for &at in &size.octals {
        // Each offset is of an ASCII `0`, so a character boundary.
        out.push_str(&text[from..=at]);
        out.push('o');
        from = at + 1;
    }
    out.push_str(&text[from..]);
    std::borrow::Cow::Owned(out)
}

/// Checks a request body against [`MAX_DEPTH`] and [`MAX_NODES`], in time linear in its length.
pub fn check(text: &str) -> Result<Size, DecodeError> {
    scan(text, true).map_err(|(_, e)| e)
}

/// Checks a text against [`MAX_DEPTH`] only (a file of many manifests, read by the CLI), also
/// saying which document (1-based) was refused.
pub fn check_depth(text: &str) -> Result<Size, (usize, DecodeError)> {
    scan(text, false)
}

fn scan(text: &str, node_limit: bool) -> Result<Size, (usize, DecodeError)> {
    let mut scanner = Scanner::new(text.as_bytes());
    scanner.node_limit = node_limit;
    match scanner.run() {
        Ok(()) => Ok(Size {
            nodes: scanner.total_nodes,
            scalar_bytes: scanner.scalar_bytes,
            octals: scanner.octals,
        }),
        Err(refusal) => Err((scanner.document, DecodeError::Syntax(refusal.to_string()))),
    }
}

/// Why a text was refused, and where (1-based, as serde_yaml reports positions).
#[derive(Debug)]
enum Refusal {
    TooDeep { line: u64, column: i64 },
    TooManyNodes { line: u64, column: i64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooDeep { line, column } => write!(
                f,
                "recursion limit exceeded: the document nests more than {MAX_DEPTH} collections, \
                 at line {line} column {column}"
            ),
            Refusal::TooManyNodes { line, column } => write!(
                f,
                "the YAML document holds more than {MAX_NODES} values, keys, collections and \
                 entries (line {line} column {column}); send it as JSON"
            ),
        }
    }
}

/// libyaml's "possible simple key": where a token that may turn out to be a mapping key began.
#[derive(Clone, Copy, Default)]
struct SimpleKey {
    possible: bool,
    pos: usize,
    line: u64,
    column: i64,
}

/// The part of libyaml's scanner state that decides where tokens are.
struct Scanner<'a> {
    text: &'a [u8],
    /// Byte offset (libyaml's `mark.index` counts bytes too).
    pos: usize,
    line: u64,
    /// Characters since the start of the line.
    column: i64,
    flow_level: usize,
    /// The current block indentation (-1 outside any block collection) and the enclosing ones.
    indent: i64,
    indents: Vec<i64>,
    simple_key_allowed: bool,
    /// One per flow level, and one for the block context.
    simple_keys: Vec<SimpleKey>,
    /// Nodes of the current document, and of all of them.
    nodes: usize,
    total_nodes: usize,
    scalar_bytes: usize,
    /// See [`Size::octals`].
    octals: Vec<usize>,
    /// The current document (1-based), and whether it has had a token yet.
    document: usize,
    in_document: bool,
    /// Whether to refuse at the limits (false: only measure, in tests), and at the node limit.
    limits: bool,
    node_limit: bool,
    #[cfg_attr(not(test), allow(dead_code))]
    max_depth: usize,
    #[cfg_attr(not(test), allow(dead_code))]
    max_nodes: usize,
    #[cfg_attr(not(test), allow(dead_code))]
    max_flow_level: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8]) -> Scanner<'a> {
        Scanner {
            text,
            pos: 0,
            line: 0,
            column: 0,
            flow_level: 0,
            indent: -1,
            indents: Vec::new(),
            simple_key_allowed: true,
            simple_keys: vec![SimpleKey::default()],
            nodes: 0,
            total_nodes: 0,
            scalar_bytes: 0,
            octals: Vec::new(),
            document: 1,
            in_document: false,
            limits: true,
            node_limit: true,
            max_depth: 0,
            max_nodes: 0,
            max_flow_level: 0,
        }
    }

    /// The byte `k` ahead, 0 past the end (libyaml's buffer ends with a NUL, and a NUL in the
    /// text is an error to libyaml's reader before the scanner gets there).
    fn at(&self, k: usize) -> u8 {
        self.text.get(self.pos + k).copied().unwrap_or(0)
    }

    /// The length in bytes of the line break `k` ahead (CR LF counts as one break), 0 if none.
    /// libyaml also breaks lines at NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR.
    fn break_len(&self, k: usize) -> usize {
        match (self.at(k), self.at(k + 1), self.at(k + 2)) {
            (b'\r', b'\n', _) => 2,
            (b'\r' | b'\n', _, _) => 1,
            (0xC2, 0x85, _) => 2,
            (0xE2, 0x80, 0xA8 | 0xA9) => 3,
            _ => 0,
        }
    }

    fn is_break(&self, k: usize) -> bool {
        self.break_len(k) > 0
    }

    fn is_blank(&self, k: usize) -> bool {
        matches!(self.at(k), b' ' | b'\t')
    }

    fn is_breakz(&self, k: usize) -> bool {
        self.at(k) == 0 || self.is_break(k)
    }

    fn is_blankz(&self, k: usize) -> bool {
        self.is_blank(k) || self.is_breakz(k)
    }

    /// Moves past one character.
    fn skip(&mut self) {
        let width = match self.at(0) {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        self.pos = (self.pos + width).min(self.text.len());
        self.column += 1;
    }

    /// Moves past one line break.
    fn skip_line(&mut self) {
        let len = self.break_len(0);
        if len > 0 {
            self.pos += len;
            self.column = 0;
            self.line += 1;
        }
    }

    fn document_indicator(&self) -> bool {
        self.column == 0
            && matches!(
                (self.at(0), self.at(1), self.at(2)),
                (b'-', b'-', b'-') | (b'.', b'.', b'.')
            )
            && self.is_blankz(3)
    }

    fn refuse(&self, too_deep: bool) -> Refusal {
        let (line, column) = (self.line + 1, self.column + 1);
        if too_deep {
            Refusal::TooDeep { line, column }
        } else {
            Refusal::TooManyNodes { line, column }
        }
    }

    /// Counts one more node of the current document.
    fn node(&mut self) -> Result<(), Refusal> {
        self.nodes += 1;
        self.total_nodes += 1;
        self.max_nodes = self.max_nodes.max(self.nodes);
        if self.limits && self.node_limit && self.nodes > MAX_NODES {
            return Err(self.refuse(false));
        }
        Ok(())
    }

    /// Counts a scalar that began at `start` and ends here.
    fn scalar(&mut self, start: usize) -> Result<(), Refusal> {
        self.scalar_bytes += self.pos - start;
        self.node()
    }

    /// Checks the nesting after a collection opened.
    fn opened(&mut self) -> Result<(), Refusal> {
        let depth = self.flow_level + self.indents.len();
        self.max_depth = self.max_depth.max(depth);
        self.max_flow_level = self.max_flow_level.max(self.flow_level);
        if self.limits && depth > MAX_DEPTH {
            return Err(self.refuse(true));
        }
        self.node()
    }

    fn run(&mut self) -> Result<(), Refusal> {
        // libyaml's reader drops a byte order mark at the start of the stream.
        if self.text.starts_with(BOM) {
            self.pos = BOM.len();
        }
        loop {
            self.scan_to_next_token();
            self.unroll_indent(self.column);
            let c = self.at(0);
            if c == 0 {
                return Ok(());
            }
            if self.column == 0 && c == b'%' {
                self.directive();
                continue;
            }
            if self.document_indicator() {
                self.unroll_indent(-1);
                self.remove_simple_key();
                self.simple_key_allowed = false;
                self.pos += 3;
                self.column += 3;
                self.nodes = 0;
                if self.in_document {
                    self.document += 1;
                    self.in_document = false;
                }
                // The document may be empty: a null.
                self.node()?;
                continue;
            }
            self.in_document = true;
            let flow = self.flow_level > 0;
            match c {
                b'[' | b'{' => {
                    self.save_simple_key();
                    self.flow_level += 1;
                    self.simple_keys.push(SimpleKey::default());
                    self.simple_key_allowed = true;
                    self.opened()?;
                    self.skip();
                }
                b']' | b'}' => {
                    self.remove_simple_key();
                    if self.flow_level > 0 {
                        self.flow_level -= 1;
                        self.simple_keys.pop();
                    }
                    self.simple_key_allowed = false;
                    self.skip();
                }
                b',' => {
                    self.remove_simple_key();
                    self.simple_key_allowed = true;
                    self.skip();
                }
                b'-' if self.is_blankz(1) => {
                    self.roll_indent(self.column)?;
                    self.remove_simple_key();
                    self.simple_key_allowed = true;
                    self.node()?;
                    self.skip();
                }
                b'?' if flow || self.is_blankz(1) => {
                    self.roll_indent(self.column)?;
                    self.remove_simple_key();
                    self.simple_key_allowed = !flow;
                    self.node()?;
                    self.skip();
                }
                b':' if flow || self.is_blankz(1) => {
                    self.value()?;
                    self.node()?;
                    self.skip();
                }
                b'*' | b'&' => {
                    self.save_simple_key();
                    self.simple_key_allowed = false;
                    self.skip();
                    while self.at(0).is_ascii_alphanumeric() || matches!(self.at(0), b'_' | b'-') {
                        self.skip();
                    }
                    if c == b'*' {
                        self.node()?;
                    }
                }
                b'!' => {
                    self.save_simple_key();
                    self.simple_key_allowed = false;
                    self.tag();
                }
                b'|' | b'>' if !flow => {
                    self.remove_simple_key();
                    self.simple_key_allowed = true;
                    let start = self.pos;
                    self.block_scalar();
                    self.scalar(start)?;
                }
                b'\'' | b'"' => {
                    self.save_simple_key();
                    self.simple_key_allowed = false;
                    let start = self.pos;
                    self.flow_scalar(c == b'\'');
                    self.scalar(start)?;
                }
                _ if self.plain_scalar_starts(c) => {
                    self.save_simple_key();
                    self.simple_key_allowed = false;
                    let start = self.pos;
                    self.note_octal();
                    self.plain_scalar();
                    self.scalar(start)?;
                }
                // No token starts here: libyaml stops with an error.
                _ => self.skip(),
            }
        }
    }

    /// libyaml's `scan_to_next_token`: spaces, comments and line breaks.
    fn scan_to_next_token(&mut self) {
        loop {
            if self.column == 0 && self.text[self.pos..].starts_with(BOM) {
                self.skip();
            }
            while self.at(0) == b' '
                || ((self.flow_level > 0 || !self.simple_key_allowed) && self.at(0) == b'\t')
            {
                self.skip();
            }
            if self.at(0) == b'#' {
                while !self.is_breakz(0) {
                    self.skip();
                }
            }
            if !self.is_break(0) {
                return;
            }
            self.skip_line();
            if self.flow_level == 0 {
                self.simple_key_allowed = true;
            }
        }
    }

    /// Opens a block collection at `column` if it is deeper than the current one.
    fn roll_indent(&mut self, column: i64) -> Result<(), Refusal> {
        if self.flow_level == 0 && self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
            self.opened()?;
        }
        Ok(())
    }

    /// Closes the block collections deeper than `column`.
    fn unroll_indent(&mut self, column: i64) {
        if self.flow_level > 0 {
            return;
        }
        while self.indent > column {
            match self.indents.pop() {
                Some(indent) => self.indent = indent,
                None => {
                    self.indent = -1;
                    return;
                }
            }
        }
    }

    fn save_simple_key(&mut self) {
        if !self.simple_key_allowed {
            return;
        }
        let key = SimpleKey {
            possible: true,
            pos: self.pos,
            line: self.line,
            column: self.column,
        };
        if let Some(top) = self.simple_keys.last_mut() {
            *top = key;
        }
    }

    fn remove_simple_key(&mut self) {
        if let Some(top) = self.simple_keys.last_mut() {
            top.possible = false;
        }
    }

    /// A `:` value indicator: the simple key before it, if still possible (same line, within
    /// 1024 bytes), becomes a mapping key, which opens a block mapping at its column.
    fn value(&mut self) -> Result<(), Refusal> {
        let key = self.simple_keys.last().copied().unwrap_or_default();
        let live = key.possible && key.line == self.line && key.pos + 1024 >= self.pos;
        self.remove_simple_key();
        if live {
            self.roll_indent(key.column)?;
            self.simple_key_allowed = false;
        } else {
            self.roll_indent(self.column)?;
            self.simple_key_allowed = self.flow_level == 0;
        }
        Ok(())
    }

    /// libyaml's condition for a plain scalar at `c`, given that no other token matched.
    fn plain_scalar_starts(&self, c: u8) -> bool {
        !(self.is_blankz(0) || b"-?:,[]{}#&*!|>'\"%@`".contains(&c))
            || (c == b'-' && !self.is_blank(1))
            || (self.flow_level == 0 && matches!(c, b'?' | b':') && !self.is_blankz(1))
    }

    /// `%YAML` or `%TAG` at the start of a line: valid ones end at the line break, which libyaml
    /// consumes (without allowing a simple key after it).
    fn directive(&mut self) {
        self.unroll_indent(-1);
        self.remove_simple_key();
        self.simple_key_allowed = false;
        while !self.is_breakz(0) {
            self.skip();
        }
        self.skip_line();
    }

    /// A tag: `!<verbatim>`, or `!`, `!!` or `!handle!` and a suffix of URI characters (`,`,
    /// `[` and `]` only in the verbatim form).
    fn tag(&mut self) {
        self.skip();
        let verbatim = self.at(0) == b'<';
        if verbatim {
            self.skip();
        }
        while is_uri_char(self.at(0), verbatim) {
            self.skip();
        }
        if verbatim && self.at(0) == b'>' {
            self.skip();
        }
    }

    /// A single- or double-quoted scalar, up to its closing quote.
    fn flow_scalar(&mut self, single: bool) {
        let quote = if single { b'\'' } else { b'"' };
        self.skip();
        loop {
            // A document indicator or the end of the text inside a quoted scalar: an error.
            if self.document_indicator() || self.at(0) == 0 {
                return;
            }
            while !self.is_blankz(0) {
                let c = self.at(0);
                if single && c == b'\'' && self.at(1) == b'\'' {
                    self.skip();
                    self.skip();
                } else if c == quote {
                    break;
                } else if !single && c == b'\\' && self.is_break(1) {
                    self.skip();
                    self.skip_line();
                    break;
                } else if !single && c == b'\\' {
                    let digits = match self.at(1) {
                        b'0' | b'a' | b'b' | b't' | b'\t' | b'n' | b'v' | b'f' | b'r' | b'e'
                        | b' ' | b'"' | b'/' | b'\\' | b'N' | b'_' | b'L' | b'P' => 0,
                        b'x' => 2,
                        b'u' => 4,
                        b'U' => 8,
                        _ => return,
                    };
                    self.skip();
                    self.skip();
                    for _ in 0..digits {
                        if !self.at(0).is_ascii_hexdigit() {
                            return;
                        }
                        self.skip();
                    }
                } else {
                    self.skip();
                }
            }
            if self.at(0) == quote {
                self.skip();
                return;
            }
            while self.is_blank(0) || self.is_break(0) {
                if self.is_blank(0) {
                    self.skip();
                } else {
                    self.skip_line();
                }
            }
        }
    }

    /// Records a plain scalar starting here that is a whole YAML 1.1 octal integer
    /// (`[-+]?0[0-7]+`, then only blanks before the end of the line, a comment, or in flow
    /// context the end of the entry); a key (`0644: x`) is left as written.
    fn note_octal(&mut self) {
        let sign = usize::from(matches!(self.at(0), b'-' | b'+'));
        if self.at(sign) != b'0' {
            return;
        }
        let mut end = sign + 1;
        while (b'0'..=b'7').contains(&self.at(end)) {
            end += 1;
        }
        if end == sign + 1 {
            return;
        }
        let flow_end = |c: u8| self.flow_level > 0 && matches!(c, b',' | b']' | b'}');
        let mut k = end;
        let ends = if self.is_blank(k) {
            while self.is_blank(k) {
                k += 1;
            }
            self.is_breakz(k) || self.at(k) == b'#' || flow_end(self.at(k))
        } else {
            self.is_breakz(k) || flow_end(self.at(k))
        };
        if ends {
            self.octals.push(self.pos + sign);
        }
    }

    /// A plain scalar: it may go on over lines indented deeper than the current block, and ends
    /// at `: `, ` #`, a less indented line, a document indicator, or (in flow context) a flow
    /// indicator.
    fn plain_scalar(&mut self) {
        let indent = self.indent + 1;
        let flow = self.flow_level > 0;
        let mut leading_blanks = false;
        loop {
            if self.document_indicator() || self.at(0) == b'#' {
                break;
            }
            while !self.is_blankz(0) {
                let c = self.at(0);
                if flow
                    && c == b':'
                    && matches!(self.at(1), b',' | b'?' | b'[' | b']' | b'{' | b'}')
                {
                    return;
                }
                if (c == b':' && self.is_blankz(1))
                    || (flow && matches!(c, b',' | b'[' | b']' | b'{' | b'}'))
                {
                    break;
                }
                leading_blanks = false;
                self.skip();
            }
            if !(self.is_blank(0) || self.is_break(0)) {
                break;
            }
            while self.is_blank(0) || self.is_break(0) {
                if self.is_blank(0) {
                    if leading_blanks && self.column < indent && self.at(0) == b'\t' {
                        return;
                    }
                    self.skip();
                } else {
                    self.skip_line();
                    leading_blanks = true;
                }
            }
            if !flow && self.column < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
    }

    /// A literal (`|`) or folded (`>`) scalar: its header, then every line indented at least as
    /// deep as its first non-empty line (or as its indentation indicator says).
    fn block_scalar(&mut self) {
        self.skip();
        let mut increment = 0;
        let c = self.at(0);
        if c == b'+' || c == b'-' {
            self.skip();
            if self.at(0).is_ascii_digit() {
                if self.at(0) == b'0' {
                    return;
                }
                increment = i64::from(self.at(0) - b'0');
                self.skip();
            }
        } else if c.is_ascii_digit() {
            if c == b'0' {
                return;
            }
            increment = i64::from(c - b'0');
            self.skip();
            if matches!(self.at(0), b'+' | b'-') {
                self.skip();
            }
        }
        while self.is_blank(0) {
            self.skip();
        }
        if self.at(0) == b'#' {
            while !self.is_breakz(0) {
                self.skip();
            }
        }
        if !self.is_breakz(0) {
            return;
        }
        self.skip_line();
        let mut indent = match increment {
            0 => 0,
            n if self.indent >= 0 => self.indent + n,
            n => n,
        };
        if !self.block_scalar_breaks(&mut indent) {
            return;
        }
        while self.column == indent && self.at(0) != 0 {
            while !self.is_breakz(0) {
                self.skip();
            }
            self.skip_line();
            if !self.block_scalar_breaks(&mut indent) {
                return;
            }
        }
    }

    /// The empty lines and indentation before a block scalar's next line; works out the
    /// scalar's indentation when it is still 0. False on a tab in the indentation (an error).
    fn block_scalar_breaks(&mut self, indent: &mut i64) -> bool {
        let mut max_indent = 0;
        loop {
            while (*indent == 0 || self.column < *indent) && self.at(0) == b' ' {
                self.skip();
            }
            max_indent = max_indent.max(self.column);
            if (*indent == 0 || self.column < *indent) && self.at(0) == b'\t' {
                return false;
            }
            if !self.is_break(0) {
                break;
            }
            self.skip_line();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
        true
    }
}

/// Characters libyaml reads as part of a tag's URI.
fn is_uri_char(c: u8, verbatim: bool) -> bool {
    c.is_ascii_alphanumeric()
        || b"_-;/?:@&=+$.%!~*'()".contains(&c)
        || (verbatim && matches!(c, b',' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most collections open at once, the most flow collections open at once, and the most
    /// nodes of one document, without limits.
    fn measure(text: &str) -> (usize, usize, usize) {
        let mut scanner = Scanner::new(text.as_bytes());
        scanner.limits = false;
        let _ = scanner.run();
        (scanner.max_depth, scanner.max_flow_level, scanner.max_nodes)
    }

    fn depth(text: &str) -> usize {
        measure(text).0
    }

    #[test]
    fn counts_flow_and_block_nesting_as_libyaml_does() {
        assert_eq!(depth("a: [[1, {b: [2]}]]"), 5);
        assert_eq!(depth("a:\n  b:\n    - - - x\n"), 5);
        // A sequence at its key's indentation opens no indentation level.
        assert_eq!(depth("a:\n- x\n"), 1);
        assert_eq!(depth("[a]: b"), 1);
        assert_eq!(depth("- [a, [b]]\n- c\n"), 3);
    }

    #[test]
    fn brackets_inside_scalars_and_comments_open_nothing() {
        let texts = [
            "a: 'x[[[{'\n",
            "a: \"x[[[{\\\" [[\"\n",
            "a: x[[[\n",
            "a: b [c\n  [d [e\n",
            "a: |\n  [[[[\n  {{{{\n",
            "a: >-\n  [[[[\n\n  ]\nb: c\n",
            "a: b # [[[[\n",
            "# [[[[\na: b\n",
            "a: !<foo[[[> x\n",
            "%YAML 1.1 # [[[\n---\na: b\n",
        ];
        for text in texts {
            assert!(depth(text) <= 1, "{text:?}: {}", depth(text));
        }
    }

    #[test]
    fn a_block_scalar_ends_at_the_first_line_indented_less() {
        // `[[[` is at the mapping's own indentation: not part of the scalar.
        assert_eq!(depth("a: |\n[[[\n"), 4);
        assert_eq!(depth("- a: |\n  [[[\n"), 5);
        assert_eq!(depth("- a: |\n   [[[\n"), 2);
    }

    #[test]
    fn deep_and_large_texts_are_refused_with_their_position() {
        let flow = format!("a: {}", "[".repeat(200));
        let err = check(&flow).unwrap_err().to_string();
        assert_eq!(
            err,
            "recursion limit exceeded: the document nests more than 128 collections, at line 1 \
             column 131"
        );
        assert!(check(&format!("a: {}1{}", "[".repeat(127), "]".repeat(127))).is_ok());
        let block: String = (0..129).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert!(check(&block).unwrap_err().to_string().contains("line 129"));
        let many = format!("[{}]", vec!["1"; MAX_NODES].join(","));
        let err = check(&many).unwrap_err().to_string();
        assert!(err.contains("more than 65536 values"), "{err}");
        assert!(check_depth(&many).is_ok());
        // The count is per document.
        let half = format!("[{}]\n", vec!["1"; MAX_NODES / 2].join(","));
        let size = check(&format!("{half}---\n{half}---\n{half}")).unwrap();
        assert_eq!(size.nodes, 3 * (MAX_NODES / 2 + 1) + 2);
        assert_eq!(size.scalar_bytes, 3 * (MAX_NODES / 2));
    }

    /// What libyaml's own scanner reaches on `text`: the most flow collections open at once and
    /// the most collections open at once in its token stream (a mapping's start is put before
    /// its first key, so this can be one more than the scanner's own count), and whether it read
    /// the whole text without an error.
    fn libyaml(text: &str) -> (usize, usize, bool) {
        use unsafe_libyaml::*;
        // SAFETY: the parser is initialized before use and deleted once; `text` outlives it;
        // each token is deleted once, after its type is read.
        unsafe {
            let mut parser = std::mem::MaybeUninit::<yaml_parser_t>::uninit();
            assert!(yaml_parser_initialize(parser.as_mut_ptr()).ok);
            let parser = parser.as_mut_ptr();
            yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
            let (mut flow, mut block, mut max_flow, mut max_total) = (0usize, 0usize, 0, 0);
            let complete = loop {
                let mut token = std::mem::MaybeUninit::<yaml_token_t>::uninit();
                if !yaml_parser_scan(parser, token.as_mut_ptr()).ok {
                    break false;
                }
                let token = token.as_mut_ptr();
                let kind = (*token).type_;
                yaml_token_delete(token);
                match kind {
                    YAML_FLOW_SEQUENCE_START_TOKEN | YAML_FLOW_MAPPING_START_TOKEN => flow += 1,
                    YAML_FLOW_SEQUENCE_END_TOKEN | YAML_FLOW_MAPPING_END_TOKEN => {
                        flow = flow.saturating_sub(1)
                    }
                    YAML_BLOCK_SEQUENCE_START_TOKEN | YAML_BLOCK_MAPPING_START_TOKEN => block += 1,
                    YAML_BLOCK_END_TOKEN => block = block.saturating_sub(1),
                    YAML_STREAM_END_TOKEN => break true,
                    _ => {}
                }
                max_flow = max_flow.max(flow);
                max_total = max_total.max(flow + block);
            };
            yaml_parser_delete(parser);
            (max_flow, max_total, complete)
        }
    }

    /// The pre-scan never counts fewer flow collections than libyaml opens (what costs libyaml
    /// its time), and on a text libyaml reads without error it counts exactly as many, and no
    /// more collections in all than libyaml's tokens nest (so it refuses nothing serde_yaml
    /// could accept).
    fn agrees_with_libyaml(text: &str) {
        let (depth, flow, _) = measure(text);
        let (libyaml_flow, libyaml_total, complete) = libyaml(text);
        assert!(
            flow >= libyaml_flow,
            "{text:?}: flow {flow} < libyaml's {libyaml_flow}"
        );
        if complete {
            assert_eq!(flow, libyaml_flow, "{text:?}");
            assert!(
                depth <= libyaml_total,
                "{text:?}: {depth} > libyaml's {libyaml_total}"
            );
            assert!(
                depth + 1 >= libyaml_total,
                "{text:?}: {depth} vs libyaml's {libyaml_total}"
            );
        }
    }

    #[test]
    fn the_worst_shapes_and_the_tricky_corners_agree_with_libyaml() {
        let texts = [
            format!("a: {}", "[".repeat(300)),
            format!("a: {}", "{a: ".repeat(300)),
            format!("a: {}", "[{".repeat(150)),
            format!("{}x", "- ".repeat(300)),
            (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect(),
            format!("a: &{} [1]\nb: *{}\n", "x".repeat(3000), "x".repeat(3000)),
            format!("{}: [[[1]]]\n", "k".repeat(1030)),
            "[[a]]: b\n[c]: {d: [e]}\n".into(),
            "? [a, [b]]\n: [c]\n".into(),
            "a: |2-\n    [[\n  [[\nb: >\n\n\n   x\n  [[\n".into(),
            "- |\n [[[\n- >+\n\t[\n".into(),
            "a: 'it''s [[' \nb: \"\\\"[[\\\n  {{\"\nc: \"\\x41\\u00e9[\"\n".into(),
            "a: b\r\n  [c\r\nd: [e,\u{85}f]\u{2028}g: {h: i}\n".into(),
            "\u{feff}a: [b]\n\u{feff}c: [[d]]\n".into(),
            "%YAML 1.1\n%TAG !e! tag:x.com,2000:[\n--- !e!t [a]\n... # [[\n---\n[[b]]\n".into(),
            "a: !<tag:x[,]> [b]\nc: !!str [d]\ne: ! [f]\n".into(),
            "a:\tb\n\t[c]\n".into(),
            "{a: [b, c]: d, e:f, ? g, [h]: i}\n".into(),
            "a: -[b]\nc: :[d]\ne: ?[f]\n- [g]\n".into(),
            "a: b #[[\n  # [[[\n  c [[\n".into(),
            "'a\n---\n[[[\n".into(),
            "a: \"b\\\n[[\"\n".into(),
            "\0[[[".into(),
        ];
        for text in &texts {
            agrees_with_libyaml(text);
        }
    }

    /// Fragments of YAML's syntax, glued at random.
    fn yaml_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let fragment = prop_oneof![
            4 => prop::sample::select(vec![
                "[", "]", "{", "}", ",", ", ", ": ", ":", "- ", "-", "? ", "?", "\n", "\n  ",
                "\n    ", "  ", " ", "\t", "a", "b c", "1", "#", " # [c\n", "'", "''", "\"",
                "\\\"", "\\", "|", "|-\n", ">2\n", "|+\n  ", "&a ", "&a", "*a", "!t ", "!",
                "!<x[>", "!!str ", "%YAML 1.1\n", "%", "---\n", "--- ", "...\n", "\r\n", "\r",
                "\u{85}", "\u{2028}", "é", "\u{feff}", "x:y", "@", "`", "\0", "\\x4", "\\u00e9",
            ])
            .prop_map(str::to_owned),
            1 => "[a-z \\[\\]{}:,'\"#|>\n-]{0,8}",
        ];
        prop::collection::vec(fragment, 0..80).prop_map(|parts| parts.concat())
    }

    /// A YAML document's tree, to be written in block and flow styles.
    #[derive(Clone, Debug)]
    enum Tree {
        Scalar(usize),
        Seq(Vec<Tree>, bool),
        Map(Vec<Tree>, bool),
    }

    /// Scalars that hold brackets, quotes and comment signs where they do not count.
    const BLOCK_SCALARS: [&str; 8] = [
        "a",
        "x[{",
        "'it''s [['",
        "\"q\\\" {[\"",
        "&a b[",
        "*a",
        "!t c",
        "-d [",
    ];
    const FLOW_SCALARS: [&str; 6] = ["a", "'[{,'", "\"]}\"", "&a b", "*a", "!t c"];

    fn tree() -> impl proptest::strategy::Strategy<Value = Tree> {
        use proptest::prelude::*;
        (0usize..8)
            .prop_map(Tree::Scalar)
            .prop_recursive(12, 96, 4, |inner| {
                prop_oneof![
                    (prop::collection::vec(inner.clone(), 0..4), any::<bool>())
                        .prop_map(|(items, flow)| Tree::Seq(items, flow)),
                    (prop::collection::vec(inner, 0..4), any::<bool>())
                        .prop_map(|(items, flow)| Tree::Map(items, flow)),
                ]
            })
    }

    fn flow_text(tree: &Tree, out: &mut String) {
        match tree {
            Tree::Scalar(i) => out.push_str(FLOW_SCALARS[i % FLOW_SCALARS.len()]),
            Tree::Seq(items, _) | Tree::Map(items, _) => {
                let map = matches!(tree, Tree::Map(..));
                out.push(if map { '{' } else { '[' });
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    if map {
                        out.push_str(&format!("k{i}: "));
                    }
                    flow_text(item, out);
                }
                out.push(if map { '}' } else { ']' });
            }
        }
    }

    /// Writes `tree` as the value after `key: ` or `- ` at indentation `indent`.
    fn block_value(tree: &Tree, indent: usize, comment: bool, out: &mut String) {
        let pad = " ".repeat(indent);
        match tree {
            Tree::Scalar(7) => {
                out.push_str(" |\n");
                out.push_str(&format!("{pad}  [[ {{ # not a comment\n\n{pad}   ]' \"\n"));
            }
            Tree::Scalar(i) => {
                out.push(' ');
                out.push_str(BLOCK_SCALARS[i % BLOCK_SCALARS.len()]);
                out.push_str(if comment { " # [[ {\n" } else { "\n" });
            }
            Tree::Seq(items, false) if !items.is_empty() => {
                out.push('\n');
                for item in items {
                    out.push_str(&format!("{pad}  -"));
                    block_value(item, indent + 2, !comment, out);
                }
            }
            Tree::Map(items, false) if !items.is_empty() => {
                out.push('\n');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&format!("{pad}  k{i}:"));
                    block_value(item, indent + 2, !comment, out);
                }
            }
            _ => {
                out.push(' ');
                flow_text(tree, out);
                out.push('\n');
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        #[test]
        fn random_texts_agree_with_libyaml(text in yaml_like()) {
            agrees_with_libyaml(&text);
        }

        #[test]
        fn documents_in_every_style_agree_with_libyaml(tree in tree(), comment: bool) {
            let mut text = String::from("top:");
            block_value(&tree, 0, comment, &mut text);
            let (_, _, complete) = libyaml(&text);
            proptest::prop_assert!(complete, "{text}");
            agrees_with_libyaml(&text);
        }
    }
}
