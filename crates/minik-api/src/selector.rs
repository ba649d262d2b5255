//! Label selectors: the `-l`/`labelSelector=` string syntax, `LabelSelector` objects and node
//! selector requirements, all turned into one [`Selector`] that matches label sets the way
//! Kubernetes' `k8s.io/apimachinery/pkg/labels` does; plus validation of labels and selectors
//! with Kubernetes' field paths and wording.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names::{label_value, qualified_name};

/// How a requirement compares a label with its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value` or `key==value`: the label is present with exactly this value.
    Equals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>5`: the label is present, is an integer, and is greater (node affinity's `Gt`).
    GreaterThan,
    /// `key<5`: the label is present, is an integer, and is smaller (node affinity's `Lt`).
    LessThan,
}

/// One condition on one label. All of a selector's requirements must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
    /// One value for `Equals`, `NotEquals`, `GreaterThan`, `LessThan`; one or more for `In` and
    /// `NotIn`; none for `Exists` and `DoesNotExist`.
    pub values: Vec<String>,
}

impl Requirement {
    /// A requirement checked as Kubernetes' `labels.NewRequirement` checks it: a valid key, valid
    /// label values, the right number of values for the operator, integers for `>` and `<`.
    /// Values are kept sorted and without duplicates, as Kubernetes keeps them.
    pub fn new(key: &str, op: Operator, values: Vec<String>) -> Result<Requirement, String> {
        let mut problems = Vec::new();
        let key_problems = qualified_name(key);
        if !key_problems.is_empty() {
            let path = FieldPath::new("key");
            problems.push(FieldError::invalid(&path, key, key_problems.join("; ")).to_string());
        }
        let values_path = FieldPath::new("values");
        let wrong_count =
            |detail: &str| FieldError::invalid(&values_path, values.clone(), detail).to_string();
        match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                problems.push(wrong_count(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                problems.push(wrong_count(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                problems.push(wrong_count(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    problems.push(wrong_count(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        let detail = "for 'Gt', 'Lt' operators, the value must be an integer";
                        problems.push(
                            FieldError::invalid(&values_path.index(i), v.as_str(), detail)
                                .to_string(),
                        );
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let value_problems = label_value(v);
            if !value_problems.is_empty() {
                let path = values_path.index(i);
                problems.push(
                    FieldError::invalid(&path, v.as_str(), value_problems.join("; ")).to_string(),
                );
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Requirement {
            key: key.to_owned(),
            op,
            values,
        })
    }

    /// Whether the labels satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key);
        let has_value = |v: &String| self.values.contains(v);
        match self.op {
            Operator::Equals | Operator::In => label.is_some_and(has_value),
            Operator::NotEquals | Operator::NotIn => !label.is_some_and(has_value),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // Like Kubernetes: a missing or non-integer label, or a requirement without
                // exactly one integer value, matches nothing.
                let Some(Ok(have)) = label.map(|l| l.parse::<i64>()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        let set = || {
            let mut values = self.values.clone();
            values.sort();
            values.dedup();
            values.join(",")
        };
        let key = &self.key;
        match self.op {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::In => write!(f, "{key} in ({})", set()),
            Operator::NotIn => write!(f, "{key} notin ({})", set()),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::GreaterThan => write!(f, "{key}>{first}"),
            Operator::LessThan => write!(f, "{key}<{first}"),
        }
    }
}

/// A set of requirements on labels, all of which must hold. The empty selector matches every
/// label set; [`Selector::nothing`] matches none.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Selector {
    /// Sorted by key (stable), as Kubernetes keeps them, so that printing is canonical.
    requirements: Vec<Requirement>,
    /// Kubernetes' `labels.Nothing()`: what an absent selector or an empty node selector term
    /// selects. It has no string form of its own.
    nothing: bool,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// The selector that matches nothing (Kubernetes' `labels.Nothing()`). It prints as the
    /// empty string, like Kubernetes', so it does not survive printing and parsing.
    pub fn nothing() -> Selector {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// The selector made of these requirements, which must all hold.
    pub fn new(requirements: Vec<Requirement>) -> Selector {
        let mut requirements = requirements;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// `key=value` for every entry, as for `spec.nodeSelector` or a ReplicationController's
    /// selector (Kubernetes' `SelectorFromSet`). The entries are taken as they are: validate
    /// them first where they come from a user. An empty map matches everything.
    pub fn from_map(labels: &BTreeMap<String, String>) -> Selector {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        Selector::new(requirements)
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether this selector matches every label set.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this is [`Selector::nothing`].
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parses the string syntax of `kubectl get -l` and `?labelSelector=`: comma-separated
    /// requirements `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<5`,
    /// spaces allowed around tokens. The empty string selects everything. Errors use Kubernetes'
    /// wording and add the position (a character offset from 0) where parsing stopped.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let tokens = lex(s);
        let mut parser = Parser { tokens, next: 0 };
        let requirements = parser.selector()?;
        Ok(Selector::new(requirements))
    }

    /// The selector a `LabelSelector` stands for (Kubernetes' `LabelSelectorAsSelector`):
    /// `matchLabels` as `key=value` and `matchExpressions` with `In`, `NotIn`, `Exists` and
    /// `DoesNotExist`. An empty `LabelSelector` matches everything; callers should treat an
    /// absent one as [`Selector::nothing`], as Kubernetes does.
    pub fn from_label_selector(sel: &LabelSelector) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(&expr.key, op, values)?);
        }
        Ok(Selector::new(requirements))
    }

    /// The selector a node selector term's `matchExpressions` stand for (Kubernetes'
    /// `NodeSelectorRequirementsAsSelector`), with `Gt` and `Lt` comparing integers.
    ///
    /// An empty list gives [`Selector::nothing`]: in Kubernetes a node selector term without
    /// requirements matches no node.
    pub fn from_node_selector_requirements(
        reqs: &[NodeSelectorRequirement],
    ) -> Result<Selector, String> {
        if reqs.is_empty() {
            return Ok(Selector::nothing());
        }
        let mut requirements = Vec::new();
        for expr in reqs {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                "Gt" => Operator::GreaterThan,
                "Lt" => Operator::LessThan,
                other => return Err(format!("{other:?} is not a valid node selector operator")),
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(&expr.key, op, values)?);
        }
        Ok(Selector::new(requirements))
    }
}

impl fmt::Display for Selector {
    /// The canonical string form (Kubernetes' `Selector.String()`): requirements sorted by key,
    /// joined with commas, e.g. `a=b,c in (x,y),!d`. Everything and nothing both print as "".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted: Vec<&Requirement> = self.requirements.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        write_comma_separated(f, sorted)
    }
}

/// Writes `items` joined with commas: a selector's canonical form, labels' and fields' alike.
pub(crate) fn write_comma_separated<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: impl IntoIterator<Item = T>,
) -> fmt::Result {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// Checks a `LabelSelector` as Kubernetes' `ValidateLabelSelector` does: `matchLabels` keys and
/// values, and for each of `matchExpressions` its operator, the presence or absence of values,
/// its key and its values.
pub fn validate_label_selector(sel: &LabelSelector, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(labels) = &sel.match_labels {
        errs.extend(validate_labels(labels, &path.child("matchLabels")));
    }
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let path = path.child("matchExpressions").index(i);
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &path.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &path.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                &path.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for msg in qualified_name(&expr.key) {
            errs.push(FieldError::invalid(
                &path.child("key"),
                expr.key.as_str(),
                msg,
            ));
        }
        for (j, v) in values.iter().enumerate() {
            for msg in label_value(v) {
                errs.push(FieldError::invalid(
                    &path.child("values").index(j),
                    v.as_str(),
                    msg,
                ));
            }
        }
    }
    errs
}

/// Checks label keys and values as Kubernetes' `ValidateLabels` does. Like Kubernetes, both key
/// and value problems are reported at `path` itself (e.g. `metadata.labels: Invalid value:
/// "-x": ...`), with the offending key or value as the value.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for (k, v) in labels {
        for msg in qualified_name(k) {
            errs.push(FieldError::invalid(path, k.as_str(), msg));
        }
        for msg in label_value(v) {
            errs.push(FieldError::invalid(path, v.as_str(), msg));
        }
    }
    errs
}

/// A token of the selector syntax, with the character offset where it starts.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A run of characters that are neither spaces nor one of `=!(),<>`: a key, a value, or
    /// the words `in` and `notin`.
    Word(String),
    Bang,
    NotEquals,
    Equals,
    DoubleEquals,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl Token {
    /// The text as it appears in error messages; the end of the input shows as ''.
    fn literal(&self) -> &str {
        match self {
            Token::Word(w) => w,
            Token::Bang => "!",
            Token::NotEquals => "!=",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::End => "",
        }
    }
}

fn is_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>')
}

/// Splits the input into tokens with their character offsets; always ends with `Token::End`.
fn lex(s: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '!' if next == Some('=') => {
                i += 2;
                Token::NotEquals
            }
            '=' if next == Some('=') => {
                i += 2;
                Token::DoubleEquals
            }
            _ if is_symbol(c) => {
                i += 1;
                match c {
                    '!' => Token::Bang,
                    '=' => Token::Equals,
                    '(' => Token::OpenParen,
                    ')' => Token::CloseParen,
                    ',' => Token::Comma,
                    '<' => Token::LessThan,
                    _ => Token::GreaterThan,
                }
            }
            _ => {
                while i < chars.len() && !chars[i].is_whitespace() && !is_symbol(chars[i]) {
                    i += 1;
                }
                Token::Word(chars[start..i].iter().collect())
            }
        };
        tokens.push((token, start));
    }
    tokens.push((Token::End, chars.len()));
    tokens
}

/// A recursive-descent parser over the tokens, following the grammar of Kubernetes'
/// `labels.Parse`:
///
/// ```text
/// selector    := "" | requirement ("," requirement)*
/// requirement := "!" KEY | KEY [ ("in" | "notin") "(" values ")" | ("=" | "==" | "!=" | ">" | "<") [VALUE] ]
/// values      := [VALUE] ("," [VALUE])*
/// ```
struct Parser {
    tokens: Vec<(Token, usize)>,
    next: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens
            .get(self.next)
            .map(|(t, _)| t)
            .unwrap_or(&Token::End)
    }

    fn position(&self) -> usize {
        let last = self.tokens.last().map(|(_, p)| *p).unwrap_or(0);
        self.tokens.get(self.next).map(|(_, p)| *p).unwrap_or(last)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    /// An error about the next token, naming what was expected there.
    fn unexpected(&self, expected: &str) -> String {
        format!(
            "found '{}', expected: {expected} (at position {})",
            self.peek().literal(),
            self.position()
        )
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        match self.peek() {
            Token::End => return Ok(requirements),
            Token::Word(_) | Token::Bang => {}
            _ => return Err(self.unexpected("!, identifier, or 'end of string'")),
        }
        loop {
            let start = self.position();
            let requirement = self
                .requirement()
                .map_err(|e| format!("unable to parse requirement: {e}"))?;
            let requirement = requirement.map_err(|e| {
                format!("unable to parse requirement: {e} (in the requirement at position {start})")
            })?;
            requirements.push(requirement);
            match self.peek() {
                Token::End => return Ok(requirements),
                Token::Comma => {
                    self.advance();
                    if !matches!(self.peek(), Token::Word(_) | Token::Bang) {
                        return Err(self.unexpected("identifier after ','"));
                    }
                }
                _ => return Err(self.unexpected("',' or 'end of string'")),
            }
        }
    }

    /// Parses one requirement. The outer error is a syntax error (with its position); the inner
    /// one a requirement that reads well but is invalid (bad key, value or value count).
    fn requirement(&mut self) -> Result<Result<Requirement, String>, String> {
        let negated = *self.peek() == Token::Bang;
        if negated {
            self.advance();
        }
        let key = match self.peek() {
            Token::Word(w) => w.clone(),
            _ => return Err(self.unexpected("identifier")),
        };
        let key_position = self.position();
        self.advance();
        let key_problems = qualified_name(&key);
        if !key_problems.is_empty() {
            return Err(format!(
                "{} (at position {key_position})",
                FieldError::invalid(
                    &FieldPath::new("key"),
                    key.as_str(),
                    key_problems.join("; ")
                )
            ));
        }
        if negated {
            return Ok(Requirement::new(&key, Operator::DoesNotExist, Vec::new()));
        }
        let op = match self.peek() {
            Token::End | Token::Comma => {
                return Ok(Requirement::new(&key, Operator::Exists, Vec::new()))
            }
            Token::Word(w) if w == "in" => Operator::In,
            Token::Word(w) if w == "notin" => Operator::NotIn,
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            _ => return Err(self.unexpected("in, notin, =, ==, !=, gt, lt")),
        };
        self.advance();
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        Ok(Requirement::new(&key, op, values))
    }

    /// The value after `=`, `!=`, `>` or `<`; nothing there means the empty value (`a=`).
    fn exact_value(&mut self) -> Result<String, String> {
        match self.peek() {
            Token::End | Token::Comma => Ok(String::new()),
            Token::Word(w) => {
                let value = w.clone();
                self.advance();
                Ok(value)
            }
            _ => Err(self.unexpected("identifier")),
        }
    }

    /// `( v1, v2 )`; an empty slot is the empty value, so `()` is the set {""} as in Kubernetes.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        if *self.peek() != Token::OpenParen {
            return Err(self.unexpected("'('"));
        }
        self.advance();
        let mut values = Vec::new();
        loop {
            let value = match self.peek() {
                Token::Word(w) => {
                    let value = w.clone();
                    self.advance();
                    value
                }
                Token::Comma | Token::CloseParen => String::new(),
                _ => return Err(self.unexpected("',', ')' or identifier")),
            };
            values.push(value);
            match self.peek() {
                Token::Comma => {
                    self.advance();
                }
                Token::CloseParen => {
                    self.advance();
                    return Ok(values);
                }
                _ => return Err(self.unexpected("',' or ')'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn parses_to_canonical_form() {
        let cases = [
            ("", ""),
            ("   ", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            (" a = b , c != d ", "a=b,c!=d"),
            ("x=1,a=2", "a=2,x=1"),
            ("a in (y,x,y)", "a in (x,y)"),
            ("a in(x)", "a in (x)"),
            ("a notin (x)", "a notin (x)"),
            ("a", "a"),
            ("!a", "!a"),
            ("! a", "!a"),
            ("a>1", "a>1"),
            ("a < 5", "a<5"),
            ("a=", "a="),
            ("a=,b", "a=,b"),
            ("a in ()", "a in ()"),
            ("a in (x,)", "a in (,x)"),
            ("a in (,x)", "a in (,x)"),
            ("a in (x,,y)", "a in (,x,y)"),
            ("in=notin", "in=notin"),
            ("a in (in,notin)", "a in (in,notin)"),
            (
                "app.kubernetes.io/name=web,tier in (db, cache),!canary",
                "app.kubernetes.io/name=web,!canary,tier in (cache,db)",
            ),
            ("env,env=prod", "env,env=prod"),
        ];
        for (input, canonical) in cases {
            let sel = parse(input);
            assert_eq!(sel.to_string(), canonical, "{input}");
            assert_eq!(parse(canonical), sel, "{input}");
        }
    }

    #[test]
    fn rejects_bad_syntax_with_a_position() {
        let cases = [
            (
                "a=b c",
                "found 'c', expected: ',' or 'end of string' (at position 4)",
            ),
            (
                "a b",
                "found 'b', expected: in, notin, =, ==, !=, gt, lt (at position 2)",
            ),
            (
                "=a",
                "found '=', expected: !, identifier, or 'end of string' (at position 0)",
            ),
            (
                "a=b,",
                "found '', expected: identifier after ',' (at position 4)",
            ),
            (
                "a=b,,c",
                "found ',', expected: identifier after ',' (at position 4)",
            ),
            ("a in x", "found 'x', expected: '(' (at position 5)"),
            ("a in (x", "found '', expected: ',' or ')' (at position 7)"),
            (
                "a in (x y)",
                "found 'y', expected: ',' or ')' (at position 8)",
            ),
            (
                "a in (=)",
                "found '=', expected: ',', ')' or identifier (at position 6)",
            ),
            ("a==(b)", "found '(', expected: identifier (at position 3)"),
            (
                "!a=b",
                "found '=', expected: ',' or 'end of string' (at position 2)",
            ),
            ("!", "found '', expected: identifier (at position 1)"),
            ("!!a", "found '!', expected: identifier (at position 1)"),
            ("a>=1", "found '=', expected: identifier (at position 2)"),
        ];
        for (input, message) in cases {
            match Selector::parse(input) {
                Ok(sel) => panic!("{input:?} should fail, got {sel}"),
                Err(e) => assert!(e.ends_with(message), "{input:?}: {e}"),
            }
        }
    }

    #[test]
    fn rejects_invalid_keys_values_and_counts() {
        let cases = [
            ("-a=b", "key: Invalid value: \"-a\": name part must consist of"),
            ("a=-b", "values[0]: Invalid value: \"-b\": a valid label must be"),
            ("a in (x,-y)", "values[1]: Invalid value: \"-y\""),
            ("a>b", "values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"),
            ("a<", "for 'Gt', 'Lt' operators, the value must be an integer"),
            ("a/b/c", "key: Invalid value: \"a/b/c\""),
        ];
        for (input, fragment) in cases {
            match Selector::parse(input) {
                Ok(sel) => panic!("{input:?} should fail, got {sel}"),
                Err(e) => {
                    assert!(
                        e.starts_with("unable to parse requirement: "),
                        "{input:?}: {e}"
                    );
                    assert!(e.contains(fragment), "{input:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn matches_like_kubernetes() {
        let web = labels(&[("app", "web"), ("tier", "frontend"), ("gen", "3")]);
        let none = labels(&[]);
        // selector, matches `web`, matches no labels
        let cases = [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app=db", false, false),
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("app in (web,db)", true, false),
            ("app notin (web)", false, true),
            ("app notin (db)", true, true),
            ("app", true, false),
            ("!app", false, true),
            ("app,!canary", true, false),
            ("app=web,tier=backend", false, false),
            ("gen>2", true, false),
            ("gen>3", false, false),
            ("gen<4", true, false),
            ("app>1", false, false),
            ("tier=", false, false),
        ];
        for (input, on_web, on_none) in cases {
            let sel = parse(input);
            assert_eq!(sel.matches(&web), on_web, "{input} on web");
            assert_eq!(sel.matches(&none), on_none, "{input} on no labels");
        }
        assert!(parse("tier=").matches(&labels(&[("tier", "")])));
        assert!(parse("").is_empty());
        assert!(!parse("a").is_empty());
        assert!(!Selector::nothing().matches(&none));
        assert!(!Selector::nothing().is_empty());
    }

    fn requirement(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn converts_label_selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                requirement("tier", "In", Some(&["frontend", "edge"])),
                requirement("canary", "DoesNotExist", None),
            ]),
        };
        let converted = Selector::from_label_selector(&sel);
        assert_eq!(
            converted.as_ref().map(|s| s.to_string()),
            Ok("app=web,!canary,tier in (edge,frontend)".to_string())
        );
        assert!(converted.is_ok_and(|s| s.matches(&labels(&[("app", "web"), ("tier", "edge")]))));

        let empty = Selector::from_label_selector(&LabelSelector::default());
        assert!(empty.is_ok_and(|s| s.is_empty()));

        let bad_op = LabelSelector {
            match_expressions: Some(vec![requirement("a", "Gt", Some(&["1"]))]),
            ..Default::default()
        };
        assert_eq!(
            Selector::from_label_selector(&bad_op),
            Err("\"Gt\" is not a valid label selector operator".to_string())
        );
        let no_values = LabelSelector {
            match_expressions: Some(vec![requirement("a", "In", Some(&[]))]),
            ..Default::default()
        };
        assert!(Selector::from_label_selector(&no_values).is_err());
    }

    #[test]
    fn converts_node_selector_requirements() {
        let node_req = |key: &str, operator: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        };
        let reqs = [
            node_req("cores", "Gt", &["4"]),
            node_req("disk", "In", &["ssd"]),
            node_req("gpu", "DoesNotExist", &[]),
        ];
        let sel = Selector::from_node_selector_requirements(&reqs);
        assert_eq!(
            sel.as_ref().map(|s| s.to_string()),
            Ok("cores>4,disk in (ssd),!gpu".to_string())
        );
        let sel = sel.unwrap_or_else(|_| Selector::nothing());
        assert!(sel.matches(&labels(&[("cores", "8"), ("disk", "ssd")])));
        assert!(!sel.matches(&labels(&[("cores", "4"), ("disk", "ssd")])));
        assert!(!sel.matches(&labels(&[("cores", "many"), ("disk", "ssd")])));

        // An empty term matches no node.
        let empty = Selector::from_node_selector_requirements(&[]);
        assert!(empty.is_ok_and(|s| s.is_nothing() && !s.matches(&labels(&[]))));
        assert_eq!(
            Selector::from_node_selector_requirements(&[node_req("a", "Bigger", &["1"])]),
            Err("\"Bigger\" is not a valid node selector operator".to_string())
        );
        assert!(
            Selector::from_node_selector_requirements(&[node_req("a", "Lt", &["1", "2"])]).is_err()
        );
        assert!(Selector::from_node_selector_requirements(&[node_req("a", "Lt", &["x"])]).is_err());
    }

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn validates_label_selectors_like_kubernetes() {
        let path = FieldPath::new("spec").child("selector");
        let sel = LabelSelector {
            match_labels: Some(labels(&[("-bad", "ok"), ("good", "-bad")])),
            match_expressions: Some(vec![
                requirement("a", "In", None),
                requirement("b", "Exists", Some(&["x"])),
                requirement("c", "Foo", None),
                requirement("d", "NotIn", Some(&["ok", "not ok"])),
            ]),
        };
        let got = messages(&validate_label_selector(&sel, &path));
        let name_part = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let value = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
        let want = vec![
            format!("spec.selector.matchLabels: Invalid value: \"-bad\": {name_part}"),
            format!("spec.selector.matchLabels: Invalid value: \"-bad\": {value}"),
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'".to_string(),
            "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_string(),
            "spec.selector.matchExpressions[2].operator: Invalid value: \"Foo\": not a valid selector operator".to_string(),
            format!("spec.selector.matchExpressions[3].values[1]: Invalid value: \"not ok\": {value}"),
        ];
        assert_eq!(got, want);
        assert!(validate_label_selector(&LabelSelector::default(), &path).is_empty());
    }

    #[test]
    fn validates_labels_like_kubernetes() {
        let path = FieldPath::new("metadata").child("labels");
        assert!(
            validate_labels(&labels(&[("app", "web"), ("example.com/x", "")]), &path).is_empty()
        );
        let got = validate_labels(&labels(&[("a/b/c", "v"), ("k", &"v".repeat(64))]), &path);
        let got: Vec<(String, String)> = got
            .iter()
            .map(|e| (e.field.to_string(), e.message()))
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "metadata.labels");
        assert!(got[0]
            .1
            .starts_with("Invalid value: \"a/b/c\": a qualified name must consist of"));
        assert_eq!(got[1].0, "metadata.labels");
        assert!(got[1].1.ends_with(": must be no more than 63 characters"));
    }

    fn arb_requirement() -> impl Strategy<Value = String> {
        let key =
            "([a-z0-9]{1,4}(\\.[a-z0-9]{1,4})?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?";
        let value = "([A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?)?";
        (
            key,
            prop::collection::vec(value, 1..4),
            0..8usize,
            0i64..1000,
        )
            .prop_map(|(k, vs, op, n)| match op {
                0 => format!("{k}={}", vs[0]),
                1 => format!("{k} == {}", vs[0]),
                2 => format!("{k}!={}", vs[0]),
                3 => format!("{k} in ({})", vs.join(",")),
                4 => format!("{k} notin ( {} )", vs.join(" , ")),
                5 => k,
                6 => format!("!{k}"),
                _ => format!("{k}{}{n}", if n % 2 == 0 { ">" } else { "<" }),
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Selector::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_selector_like_text(s in "[a-z !=(),<>/.-]{0,30}") {
            let _ = Selector::parse(&s);
        }

        #[test]
        fn display_then_parse_is_identity(reqs in prop::collection::vec(arb_requirement(), 0..5)) {
            let input = reqs.join(",");
            let sel = Selector::parse(&input);
            prop_assert!(sel.is_ok(), "{}: {:?}", input, sel);
            let sel = sel.unwrap_or_default();
            let printed = sel.to_string();
            prop_assert_eq!(Selector::parse(&printed), Ok(sel.clone()), "{} → {}", input, printed);
            prop_assert_eq!(Selector::parse(&printed).map(|s| s.to_string()), Ok(printed));
        }
    }
}
