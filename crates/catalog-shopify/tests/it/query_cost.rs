//! The requested cost of a GraphQL query by Shopify's documented rules,
//! computed from the query text the client sent (not from the client's own
//! estimate, so the fake catches a query that grew without the estimate):
//! a scalar or enum costs 0, an object 1, a connection (a field with a
//! `first` argument) 2 plus `first` times the cost of one node; lists of
//! objects count as one object; an inline fragment costs its selections.
use std::collections::HashMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Number(f64),
    Punct(char),
    Spread,
}

fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == ',' {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' {
            // Strings (block strings included) carry no selections.
            let block = chars[i..].starts_with(&['"', '"', '"']);
            i += if block { 3 } else { 1 };
            while i < chars.len() {
                if block && chars[i..].starts_with(&['"', '"', '"']) {
                    i += 3;
                    break;
                }
                if !block && chars[i] == '\\' {
                    i += 2;
                    continue;
                }
                if !block && chars[i] == '"' {
                    i += 1;
                    break;
                }
                i += 1;
            }
        } else if chars[i..].starts_with(&['.', '.', '.']) {
            out.push(Token::Spread);
            i += 3;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Name(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || c == '-' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Token::Number(text.parse().unwrap_or(0.0)));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

#[derive(Debug)]
enum Selection {
    Field {
        args: HashMap<String, Token>,
        children: Option<Vec<Selection>>,
        name: String,
    },
    Spread(String),
    Inline(Vec<Selection>),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn skip_parens(&mut self) {
        if self.peek() != Some(&Token::Punct('(')) {
            return;
        }
        let mut depth = 0;
        while let Some(t) = self.next() {
            match t {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    fn args(&mut self) -> HashMap<String, Token> {
        let mut args = HashMap::new();
        if self.peek() != Some(&Token::Punct('(')) {
            return args;
        }
        self.next();
        while let Some(t) = self.next() {
            match t {
                Token::Punct(')') => break,
                Token::Name(name) => {
                    self.next(); // ':'
                    let value = match self.next() {
                        Some(Token::Punct('$')) => match self.next() {
                            Some(Token::Name(var)) => Token::Name(format!("${var}")),
                            other => other.unwrap_or(Token::Punct('?')),
                        },
                        other => other.unwrap_or(Token::Punct('?')),
                    };
                    args.insert(name, value);
                }
                _ => {}
            }
        }
        args
    }

    /// A selection set, the opening `{` next.
    fn selections(&mut self) -> Vec<Selection> {
        assert_eq!(
            self.next(),
            Some(Token::Punct('{')),
            "expected a selection set"
        );
        let mut out = Vec::new();
        loop {
            match self.next() {
                Some(Token::Punct('}')) | None => return out,
                Some(Token::Spread) => match self.next() {
                    Some(Token::Name(on)) if on == "on" => {
                        self.next(); // the type
                        out.push(Selection::Inline(self.selections()));
                    }
                    Some(Token::Name(fragment)) => out.push(Selection::Spread(fragment)),
                    other => panic!("unexpected {other:?} after ..."),
                },
                Some(Token::Name(mut name)) => {
                    if self.peek() == Some(&Token::Punct(':')) {
                        // An alias: the field's name follows.
                        self.next();
                        if let Some(Token::Name(real)) = self.next() {
                            name = real;
                        }
                    }
                    let args = self.args();
                    let children =
                        (self.peek() == Some(&Token::Punct('{'))).then(|| self.selections());
                    out.push(Selection::Field {
                        args,
                        children,
                        name,
                    });
                }
                other => panic!("unexpected {other:?} in a selection set"),
            }
        }
    }
}

/// The requested cost of the document's operation.
pub(crate) fn requested_cost(query: &str, variables: &Value) -> f64 {
    let mut p = Parser {
        tokens: tokens(query),
        at: 0,
    };
    let mut operation = None;
    let mut fragments = HashMap::new();
    while let Some(t) = p.next() {
        match t {
            Token::Name(kind) if kind == "fragment" => {
                let Some(Token::Name(name)) = p.next() else {
                    panic!("fragment without a name")
                };
                p.next(); // on
                p.next(); // the type
                fragments.insert(name, p.selections());
            }
            Token::Name(kind) if kind == "query" || kind == "mutation" => {
                if let Some(Token::Name(_)) = p.peek() {
                    p.next();
                }
                p.skip_parens();
                let mutation = kind == "mutation";
                operation = Some((mutation, p.selections()));
            }
            Token::Punct('{') => {
                p.at -= 1;
                operation = Some((false, p.selections()));
            }
            _ => {}
        }
    }
    let (mutation, root) = operation.expect("no operation in the query");
    let cost = Cost {
        fragments: &fragments,
        variables,
    };
    // Root fields of a query cost as fields; a mutation costs 10.
    if mutation { 10.0 } else { cost.of(&root) }
}

struct Cost<'a> {
    fragments: &'a HashMap<String, Vec<Selection>>,
    variables: &'a Value,
}

impl Cost<'_> {
    fn number(&self, value: &Token) -> f64 {
        match value {
            Token::Number(n) => *n,
            Token::Name(var) if var.starts_with('$') => {
                self.variables[&var[1..]].as_f64().unwrap_or(0.0)
            }
            _ => 0.0,
        }
    }

    fn of(&self, selections: &[Selection]) -> f64 {
        selections.iter().map(|s| self.one(s)).sum()
    }

    fn one(&self, selection: &Selection) -> f64 {
        match selection {
            Selection::Spread(name) => self.of(&self.fragments[name]),
            Selection::Inline(children) => self.of(children),
            Selection::Field { children: None, .. } => 0.0,
            Selection::Field {
                args,
                children: Some(children),
                ..
            } => match args.get("first").or_else(|| args.get("last")) {
                None => 1.0 + self.of(children),
                Some(first) => {
                    let first = self.number(first);
                    let mut cost = 2.0;
                    for child in children {
                        cost += match child {
                            Selection::Field {
                                name,
                                children: Some(node),
                                ..
                            } if name == "nodes" => first * (1.0 + self.of(node)),
                            Selection::Field {
                                name,
                                children: Some(edges),
                                ..
                            } if name == "edges" => {
                                first
                                    * edges
                                        .iter()
                                        .map(|e| match e {
                                            Selection::Field {
                                                name,
                                                children: Some(node),
                                                ..
                                            } if name == "node" => 1.0 + self.of(node),
                                            other => self.one(other),
                                        })
                                        .sum::<f64>()
                            }
                            other => self.one(other),
                        };
                    }
                    cost
                }
            },
        }
    }
}
