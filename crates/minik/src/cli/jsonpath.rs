//! kubectl's JSONPath templates, for `get -o jsonpath=...`, `-o custom-columns=...` and
//! `--sort-by`: text with `{...}` expressions — paths (`.metadata.name`, `['key']`, `[0]`,
//! `[-1]`, `[1:3]`, `[*]`, `..name`, unions `[0,2]`), filters (`[?(@.type=="Ready")]`, with
//! `==`, `!=`, `<`, `<=`, `>`, `>=` or bare existence), string literals (`{"\n"}`) and
//! `{range EXPR}...{end}`. Missing fields print nothing, as with kubectl's default
//! `--allow-missing-template-keys=true`.

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    /// The expressions of one `{...}`; their results print separated by spaces.
    Exprs(Vec<Expr>),
    Range(Path, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Literal(String),
    Path(Path),
}

type Path = Vec<Step>;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `$`: the whole input.
    Root,
    /// `@` (or a lone `.`): the value a range body or filter is applied to.
    Current,
    Child(String),
    /// `.*` or `[*]`.
    Wildcard,
    /// `..`: this value and every value inside it, then the next step on each.
    Descendants,
    /// `[..]` with indices, slices or quoted keys, comma-separated.
    Select(Vec<Selector>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Index(i64),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Key(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Operand,
    /// `None`: the left side only has to exist.
    compare: Option<(Op, Operand)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Path),
    Value(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Template {
    /// Parses a template; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            pos: 0,
        };
        let (nodes, ended) = parser.nodes()?;
        if ended {
            return Err("unexpected {end}: no {range} is open".into());
        }
        Ok(Template { nodes })
    }

    /// A path given without braces, as custom columns and `--sort-by` take it
    /// (`.metadata.name`, `metadata.name` or `{.metadata.name}`): kubectl's relaxed form.
    pub fn parse_relaxed(path: &str) -> Result<Template, String> {
        let path = path.trim();
        let inner = path
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or(path);
        let inner = inner.trim();
        if inner.is_empty() {
            return Err(format!("unexpected path string, expected a 'name1.name2' or '.name1.name2' or '{{name1.name2}}' or '{{.name1.name2}}': {path:?}"));
        }
        let inner = if inner.starts_with('.') || inner.starts_with('$') || inner.starts_with('@') {
            inner.to_owned()
        } else {
            format!(".{inner}")
        };
        Template::parse(&format!("{{{inner}}}"))
    }

    /// The text the template makes of `data`.
    pub fn render(&self, data: &Value) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, data, data, &mut out);
        out
    }

    /// The values the template's expressions find in `data`, in order (for columns and sorting).
    pub fn values<'a>(&self, data: &'a Value) -> Vec<&'a Value> {
        let mut found = Vec::new();
        for node in &self.nodes {
            if let Node::Exprs(exprs) = node {
                for e in exprs {
                    if let Expr::Path(p) = e {
                        found.extend(eval(p, data, data));
                    }
                }
            }
        }
        found
    }
}

/// How a found value prints: strings as they are, everything else as compact JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_nodes(nodes: &[Node], root: &Value, current: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Exprs(exprs) => {
                let mut parts: Vec<String> = Vec::new();
                for e in exprs {
                    match e {
                        Expr::Literal(s) => parts.push(s.clone()),
                        Expr::Path(p) => {
                            parts.extend(eval(p, root, current).into_iter().map(text_of))
                        }
                    }
                }
                out.push_str(&parts.join(" "));
            }
            Node::Range(path, body) => {
                for item in eval(path, root, current) {
                    render_nodes(body, root, item, out);
                }
            }
        }
    }
}

/// The values a path finds, starting from `current` (`$` at the start goes to the root).
fn eval<'a>(path: &Path, root: &'a Value, current: &'a Value) -> Vec<&'a Value> {
    let mut values = vec![current];
    for step in path {
        let mut next = Vec::new();
        for v in values {
            match step {
                Step::Root => next.push(root),
                Step::Current => next.push(v),
                Step::Child(key) => {
                    if let Some(child) = v.get(key.as_str()) {
                        next.push(child);
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(items) => next.extend(items.iter()),
                    Value::Object(map) => next.extend(map.values()),
                    _ => {}
                },
                Step::Descendants => descendants(v, &mut next),
                Step::Select(selectors) => {
                    for sel in selectors {
                        select(v, sel, &mut next);
                    }
                }
                Step::Filter(filter) => {
                    let items: Vec<&Value> = match v {
                        Value::Array(items) => items.iter().collect(),
                        Value::Object(map) => map.values().collect(),
                        _ => Vec::new(),
                    };
                    next.extend(items.into_iter().filter(|item| matches(filter, root, item)));
                }
            }
        }
        values = next;
    }
    values
}

fn descendants<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(items) => items.iter().for_each(|i| descendants(i, out)),
        Value::Object(map) => map.values().for_each(|i| descendants(i, out)),
        _ => {}
    }
}

fn select<'a>(v: &'a Value, sel: &Selector, out: &mut Vec<&'a Value>) {
    match (sel, v) {
        (Selector::Key(k), Value::Object(map)) => out.extend(map.get(k)),
        (Selector::Index(i), Value::Array(items)) => {
            let len = items.len() as i64;
            let i = if *i < 0 { len + i } else { *i };
            if (0..len).contains(&i) {
                out.push(&items[i as usize]);
            }
        }
        (Selector::Slice(start, end, step), Value::Array(items)) => {
            let len = items.len() as i64;
            let clamp = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
            let start = start.map(clamp).unwrap_or(0);
            let end = end.map(clamp).unwrap_or(len);
            let step = step.unwrap_or(1).max(1);
            let mut i = start;
            while i < end {
                out.push(&items[i as usize]);
                i += step;
            }
        }
        _ => {}
    }
}

fn matches(filter: &Filter, root: &Value, item: &Value) -> bool {
    let operand = |o: &Operand| -> Option<Value> {
        match o {
            Operand::Value(v) => Some(v.clone()),
            Operand::Path(p) => eval(p, root, item).first().map(|v| (*v).clone()),
        }
    };
    let Some(left) = operand(&filter.left) else {
        return false;
    };
    let Some((op, right)) = &filter.compare else {
        return !left.is_null();
    };
    let Some(right) = operand(right) else {
        return false;
    };
    let ordering = match (&left, &right) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) if a == b => Some(std::cmp::Ordering::Equal),
        _ => None,
    };
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ordering == Some(Equal),
        Op::Ne => ordering != Some(Equal),
        Op::Lt => ordering == Some(Less),
        Op::Le => matches!(ordering, Some(Less | Equal)),
        Op::Gt => ordering == Some(Greater),
        Op::Ge => matches!(ordering, Some(Greater | Equal)),
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn rest_starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.chars.get(self.pos + i) == Some(&c))
    }

    fn error(&self, what: &str) -> String {
        let text: String = self.chars.iter().collect();
        format!("{what} at column {} of {text:?}", self.pos + 1)
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Text and `{...}` up to the end or up to an `{end}`; says whether an `{end}` ended it
    /// (the caller knows whether one may).
    fn nodes(&mut self) -> Result<(Vec<Node>, bool), String> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c != '{' {
                text.push(c);
                self.pos += 1;
                continue;
            }
            if !text.is_empty() {
                nodes.push(Node::Text(std::mem::take(&mut text)));
            }
            self.pos += 1;
            self.skip_spaces();
            if self.rest_starts_with("end") && self.closes_after(3) {
                self.pos += 3;
                self.skip_spaces();
                self.pos += 1;
                return Ok((nodes, true));
            }
            if self.rest_starts_with("range")
                && self
                    .chars
                    .get(self.pos + 5)
                    .is_some_and(|c| c.is_whitespace())
            {
                self.pos += 5;
                self.skip_spaces();
                let path = self.path()?;
                self.skip_spaces();
                if self.peek() != Some('}') {
                    return Err(self.error("expected } after the range expression"));
                }
                self.pos += 1;
                let (body, ended) = self.nodes()?;
                if !ended {
                    return Err("a {range} has no {end}".into());
                }
                nodes.push(Node::Range(path, body));
                continue;
            }
            let mut exprs = Vec::new();
            loop {
                self.skip_spaces();
                match self.peek() {
                    None => return Err(self.error("unclosed {")),
                    Some('}') => {
                        self.pos += 1;
                        break;
                    }
                    Some('"') => exprs.push(Expr::Literal(self.string('"')?)),
                    Some(',') => self.pos += 1,
                    Some(_) => exprs.push(Expr::Path(self.path()?)),
                }
            }
            if exprs.is_empty() {
                return Err(self.error("empty {}"));
            }
            nodes.push(Node::Exprs(exprs));
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok((nodes, false))
    }

    /// Whether only spaces stand between `offset` characters ahead and a `}`.
    fn closes_after(&self, offset: usize) -> bool {
        let mut i = self.pos + offset;
        while self.chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        self.chars.get(i) == Some(&'}')
    }

    /// A quoted string with `\n`, `\t`, `\\` and `\"` escapes.
    fn string(&mut self, quote: char) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    let escaped = match self.peek() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some(c) => c,
                        None => return Err(self.error("unterminated string")),
                    };
                    out.push(escaped);
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn ident(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || "_-/".contains(c) {
                name.push(c);
                self.pos += 1;
            } else if c == '\\' && self.chars.get(self.pos + 1) == Some(&'.') {
                // `k8s\.io` names a key with a dot in it.
                name.push('.');
                self.pos += 2;
            } else {
                break;
            }
        }
        name
    }

    /// A path: `$`/`@` then `.name`, `..`, `.*`, `[...]`.
    fn path(&mut self) -> Result<Path, String> {
        let mut path = Vec::new();
        match self.peek() {
            Some('$') => {
                self.pos += 1;
                path.push(Step::Root);
            }
            Some('@') => {
                self.pos += 1;
                path.push(Step::Current);
            }
            Some('.' | '[') => {}
            _ => return Err(self.error("unrecognized identifier; a path starts with . [ $ or @")),
        }
        loop {
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        self.pos += 1;
                        path.push(Step::Descendants);
                    }
                    match self.peek() {
                        Some('*') => {
                            self.pos += 1;
                            path.push(Step::Wildcard);
                        }
                        Some('[') => {}
                        _ => {
                            let name = self.ident();
                            // A lone `.` (`{.}`) is the current value.
                            if !name.is_empty() {
                                path.push(Step::Child(name));
                            } else if path.is_empty() {
                                path.push(Step::Current);
                            }
                        }
                    }
                }
                Some('[') => {
                    self.pos += 1;
                    self.skip_spaces();
                    path.push(self.bracket()?);
                }
                _ => return Ok(path),
            }
        }
    }

    /// What follows `[`, through its `]`.
    fn bracket(&mut self) -> Result<Step, String> {
        if self.peek() == Some('*') {
            self.pos += 1;
            self.skip_spaces();
            self.expect(']')?;
            return Ok(Step::Wildcard);
        }
        if self.peek() == Some('?') {
            self.pos += 1;
            self.skip_spaces();
            self.expect('(')?;
            let filter = self.filter()?;
            self.skip_spaces();
            self.expect(')')?;
            self.skip_spaces();
            self.expect(']')?;
            return Ok(Step::Filter(filter));
        }
        let mut selectors = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(q @ ('\'' | '"')) => selectors.push(Selector::Key(self.string(q)?)),
                Some(c) if c == '-' || c == ':' || c.is_ascii_digit() => {
                    selectors.push(self.index_or_slice()?)
                }
                _ => return Err(self.error("expected an index, a slice or a quoted key in [ ]")),
            }
            self.skip_spaces();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    return Ok(Step::Select(selectors));
                }
                _ => return Err(self.error("expected , or ]")),
            }
        }
    }

    fn number(&mut self) -> Result<Option<i64>, String> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| self.error(&format!("{text:?} is not a number")))
    }

    fn index_or_slice(&mut self) -> Result<Selector, String> {
        let first = self.number()?;
        if self.peek() != Some(':') {
            return first
                .map(Selector::Index)
                .ok_or_else(|| self.error("expected a number"));
        }
        self.pos += 1;
        let end = self.number()?;
        let step = if self.peek() == Some(':') {
            self.pos += 1;
            self.number()?
        } else {
            None
        };
        Ok(Selector::Slice(first, end, step))
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {c}")))
        }
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_spaces();
        match self.peek() {
            Some(q @ ('\'' | '"')) => Ok(Operand::Value(Value::String(self.string(q)?))),
            Some('@' | '$' | '.') => Ok(Operand::Path(self.path()?)),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E')
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(Value::is_number)
                    .map(Operand::Value)
                    .ok_or_else(|| self.error(&format!("{text:?} is not a number")))
            }
            _ => {
                let word = self.ident();
                match word.as_str() {
                    "true" => Ok(Operand::Value(Value::Bool(true))),
                    "false" => Ok(Operand::Value(Value::Bool(false))),
                    "null" => Ok(Operand::Value(Value::Null)),
                    _ => Err(self
                        .error("expected a path, a quoted string, a number, true, false or null")),
                }
            }
        }
    }

    fn filter(&mut self) -> Result<Filter, String> {
        let left = self.operand()?;
        self.skip_spaces();
        let op = if self.rest_starts_with("==") {
            Some(Op::Eq)
        } else if self.rest_starts_with("!=") {
            Some(Op::Ne)
        } else if self.rest_starts_with("<=") {
            Some(Op::Le)
        } else if self.rest_starts_with(">=") {
            Some(Op::Ge)
        } else if self.rest_starts_with("<") {
            Some(Op::Lt)
        } else if self.rest_starts_with(">") {
            Some(Op::Gt)
        } else {
            None
        };
        let Some(op) = op else {
            return Ok(Filter {
                left,
                compare: None,
            });
        };
        self.pos += if matches!(op, Op::Lt | Op::Gt) { 1 } else { 2 };
        let right = self.operand()?;
        Ok(Filter {
            left,
            compare: Some((op, right)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "a", "labels": {"app": "web", "k8s.io/x": "1"}}, "spec": {"containers": [{"name": "c1", "image": "nginx"}, {"name": "c2", "image": "busybox"}]}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "restartCount": 2}},
            {"metadata": {"name": "b", "labels": {"app": "db"}}, "spec": {"containers": [{"name": "c1", "image": "postgres"}]}, "status": {"phase": "Pending", "restartCount": 0}}
        ]})
    }

    fn render(template: &str) -> String {
        Template::parse(template)
            .unwrap_or_else(|e| panic!("{template}: {e}"))
            .render(&pods())
    }

    #[test]
    fn paths_print_like_kubectl() {
        let cases = [
            ("{.items[0].metadata.name}", "a"),
            ("{.items[*].metadata.name}", "a b"),
            ("{.items[-1].metadata.name}", "b"),
            ("{.items[0:1].metadata.name}", "a"),
            ("{.items[0,1].status.phase}", "Running Pending"),
            ("{.items[0].metadata.labels['k8s.io/x']}", "1"),
            ("{.items[0].metadata.labels.k8s\\.io/x}", "1"),
            ("{..image}", "nginx busybox postgres"),
            (
                "{.items[0].spec.containers[*]['name','image']}",
                "c1 nginx c2 busybox",
            ),
            (
                "{.items[?(@.status.phase==\"Pending\")].metadata.name}",
                "b",
            ),
            ("{.items[?(@.status.restartCount>1)].metadata.name}", "a"),
            ("{.items[?(@.status.conditions)].metadata.name}", "a"),
            (
                "{.items[0].status.conditions[?(@.type=='Ready')].status}",
                "True",
            ),
            (
                "{.items[0].metadata.labels}",
                r#"{"app":"web","k8s.io/x":"1"}"#,
            ),
            ("{.missing.field}", ""),
            ("name: {.items[0].metadata.name}!", "name: a!"),
            (
                "{range .items[*]}{.metadata.name}{\"\\t\"}{.status.phase}{\"\\n\"}{end}",
                "a\tRunning\nb\tPending\n",
            ),
            (
                "{range .items[*]}[{range .spec.containers[*]}{.name},{end}]{end}",
                "[c1,c2,][c1,]",
            ),
            ("{.kind} {.items[1].metadata.name}", "List b"),
            ("{$.kind}", "List"),
        ];
        for (template, want) in cases {
            assert_eq!(render(template), want, "{template}");
        }
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        for bad in [
            "{.items[}",
            "{.items",
            "{range .items[*]}{.x}",
            "{end}",
            "{}",
            "{.items[?(@.a=)]}",
            "{metadata}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_template_makes_parsing_or_rendering_panic() {
        // Every template of up to three characters from the grammar's alphabet, and many
        // longer ones from a fixed pseudo-random sequence.
        let alphabet: Vec<char> = "{}[]().*@$?'\",:-0 1a=<>!\\rneg".chars().collect();
        let data = pods();
        let try_one = |t: &str| {
            if let Ok(template) = Template::parse(t) {
                let _ = template.render(&data);
                let _ = template.values(&data);
            }
            let _ = Template::parse_relaxed(t).map(|t| t.render(&data));
        };
        for a in &alphabet {
            for b in &alphabet {
                for c in &alphabet {
                    try_one(&format!("{a}{b}{c}"));
                    try_one(&format!("{{{a}{b}{c}}}"));
                }
            }
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (state % 24) as usize;
            let mut t = String::from("{.items");
            for _ in 0..len {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                t.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            try_one(&t);
        }
    }

    #[test]
    fn relaxed_paths_take_braces_and_dots_as_optional() {
        let data = json!({"metadata": {"name": "x"}});
        for p in [
            "metadata.name",
            ".metadata.name",
            "{.metadata.name}",
            "{metadata.name}",
        ] {
            let t = Template::parse_relaxed(p).unwrap();
            assert_eq!(t.render(&data), "x", "{p}");
            assert_eq!(t.values(&data), vec![&json!("x")]);
        }
        assert!(Template::parse_relaxed("").is_err());
    }
}
