//! The expressions of experiment profiles, as Pioreactor writes them: in `if`, in `when`'s
//! `condition`, and inside `${{ }}` in options.
//!
//! Numbers, strings (`'..'` or `".."`), `true`/`false` (also `True`/`False`), `and`, `or`, `not`,
//! comparisons (`== != < <= > >=`), `+ - * /` and parentheses; a bare name is one of the
//! profile's `inputs`; `unit()`, `experiment()` and `job_name()` are the action's unit, experiment
//! and job; and a reference `unit:job:setting` reads a setting (or latest value) of a job on a
//! unit when the expression is evaluated: `::job:setting` or `unit():job:setting` on the action's
//! own unit, and `.name` after it indexes into a JSON value (`::od_reading:od1.od`).
//!
//! Hand-written (a small Pratt parser) because the references, with their colons and dots, are
//! not any general expression crate's syntax. Every error names its column in the expression.

use std::fmt;

use serde_json::Value;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// One of the profile's inputs.
    Input(String),
    /// `unit()`, `experiment()` or `job_name()`.
    Call(Builtin),
    /// A setting or value of a job on a unit (`None`: the action's own unit), with a path into
    /// its JSON value.
    Ref {
        /// The unit (node id or name, or a label); `None` for the action's own.
        unit: Option<String>,
        /// The job.
        job: String,
        /// The setting or value.
        setting: String,
        /// Keys into its JSON value.
        path: Vec<String>,
    },
    /// `not e`, `-e`.
    Unary(UnaryOp, Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// The action's unit.
    Unit,
    /// The experiment.
    Experiment,
    /// The action's job.
    JobName,
}

/// A unary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `not`.
    Not,
    /// `-`.
    Neg,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `or`.
    Or,
    /// `and`.
    And,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
}

/// Why an expression does not parse or evaluate; `column` counts characters from 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// Where in the expression (1-based characters); 0 when it is about the whole.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column > 0 {
            write!(
                f,
                "at character {} of the expression: {}",
                self.column, self.message
            )
        } else {
            f.write_str(&self.message)
        }
    }
}

/// Longest expression accepted, characters.
pub const MAX_LEN: usize = 4_096;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    /// A name, with the references' `:` and `.` parts kept whole (`unit():od:od1.x` is one).
    Word(String),
    Op(&'static str),
    LParen,
    RParen,
}

fn err(column: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        column,
        message: message.into(),
    }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || chars[i] == 'e'
                    || chars[i] == 'E'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse::<f64>()
                .map_err(|_| err(col, format!("{text:?} is not a number")))?;
            out.push((col, Tok::Num(n)));
            continue;
        }
        if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(col, "a string is not closed")),
                    Some(&q) if q == c => break,
                    Some('\\') if chars.get(i + 1).is_some() => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&x) => {
                        s.push(x);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push((col, Tok::Str(s)));
            continue;
        }
        if c.is_alphanumeric() || c == '_' || c == ':' {
            let start = i;
            // A '-' belongs to the word only in a reference (unit names have them: `pio-1:a:b`);
            // elsewhere it is a minus (`target-1`).
            let mut run_end = i;
            while run_end < chars.len() {
                let x = chars[run_end];
                if x.is_alphanumeric() || matches!(x, '_' | ':' | '.' | '-') {
                    run_end += 1;
                } else if x == '(' && chars.get(run_end + 1) == Some(&')') {
                    run_end += 2;
                } else {
                    break;
                }
            }
            let reference = chars[start..run_end].contains(&':');
            while i < chars.len() {
                let x = chars[i];
                if x.is_alphanumeric() || matches!(x, '_' | ':' | '.' | '-') {
                    if x == '-' && !reference {
                        break;
                    }
                    i += 1;
                } else if x == '(' && chars.get(i + 1) == Some(&')') {
                    // `unit()` and friends, also as a reference's unit (`unit():job:x`).
                    i += 2;
                } else {
                    break;
                }
            }
            let word: String = chars[start..i].iter().collect();
            out.push((col, Tok::Word(word)));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = match two.as_str() {
            "==" => Some("=="),
            "!=" => Some("!="),
            "<=" => Some("<="),
            ">=" => Some(">="),
            _ => None,
        };
        if let Some(op) = op {
            out.push((col, Tok::Op(op)));
            i += 2;
            continue;
        }
        let tok = match c {
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            '*' => Tok::Op("*"),
            '/' => Tok::Op("/"),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            other => return Err(err(col, format!("unexpected character {other:?}"))),
        };
        out.push((col, tok));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(_, t)| t)
    }

    fn col(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(c, _)| *c)
    }

    fn binary_op(&self) -> Option<(BinOp, u8)> {
        Some(match self.peek()? {
            Tok::Word(w) if w.eq_ignore_ascii_case("or") => (BinOp::Or, 1),
            Tok::Word(w) if w.eq_ignore_ascii_case("and") => (BinOp::And, 2),
            Tok::Op("==") => (BinOp::Eq, 4),
            Tok::Op("!=") => (BinOp::Ne, 4),
            Tok::Op("<") => (BinOp::Lt, 4),
            Tok::Op("<=") => (BinOp::Le, 4),
            Tok::Op(">") => (BinOp::Gt, 4),
            Tok::Op(">=") => (BinOp::Ge, 4),
            Tok::Op("+") => (BinOp::Add, 5),
            Tok::Op("-") => (BinOp::Sub, 5),
            Tok::Op("*") => (BinOp::Mul, 6),
            Tok::Op("/") => (BinOp::Div, 6),
            _ => return None,
        })
    }

    fn expr(&mut self, min: u8, depth: usize) -> Result<Expr, ExprError> {
        if depth > MAX_DEPTH {
            return Err(err(self.col(), "the expression nests too deeply"));
        }
        let mut lhs = self.unary(depth)?;
        while let Some((op, prec)) = self.binary_op() {
            if prec < min {
                break;
            }
            self.at += 1;
            // Comparisons do not chain; the rest are left-associative.
            let rhs = self.expr(prec + 1, depth + 1)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, ExprError> {
        if depth > MAX_DEPTH {
            return Err(err(self.col(), "the expression nests too deeply"));
        }
        let col = self.col();
        let Some((_, tok)) = self.toks.get(self.at).cloned() else {
            return Err(err(col, "it ends where a value should be"));
        };
        self.at += 1;
        match tok {
            Tok::Num(n) => Ok(Expr::Number(n)),
            Tok::Str(s) => Ok(Expr::Text(s)),
            Tok::Op("-") => Ok(Expr::Unary(
                UnaryOp::Neg,
                Box::new(self.expr(7, depth + 1)?),
            )),
            Tok::LParen => {
                let e = self.expr(0, depth + 1)?;
                match self.peek() {
                    Some(Tok::RParen) => {
                        self.at += 1;
                        Ok(e)
                    }
                    _ => Err(err(self.col(), "a '(' is not closed")),
                }
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => Ok(Expr::Unary(
                UnaryOp::Not,
                Box::new(self.expr(3, depth + 1)?),
            )),
            Tok::Word(w) => word(&w, col),
            other => Err(err(col, format!("unexpected {}", describe(&other)))),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Word(w) => format!("{w:?}"),
        Tok::Op(o) => format!("{o:?}"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

fn word(w: &str, col: usize) -> Result<Expr, ExprError> {
    match w {
        "true" | "True" => return Ok(Expr::Bool(true)),
        "false" | "False" => return Ok(Expr::Bool(false)),
        "unit()" => return Ok(Expr::Call(Builtin::Unit)),
        "experiment()" => return Ok(Expr::Call(Builtin::Experiment)),
        "job_name()" => return Ok(Expr::Call(Builtin::JobName)),
        _ => {}
    }
    if !w.contains(':') {
        if w.ends_with("()") {
            return Err(err(
                col,
                format!("unknown function {w} (there are unit(), experiment() and job_name())"),
            ));
        }
        if !is_name(w) || w.contains('.') {
            return Err(err(col, format!("{w:?} is not a name")));
        }
        return Ok(Expr::Input(w.to_owned()));
    }
    // A reference: unit:job:setting[.key...], `::job:setting`, `unit():job:setting`.
    let (unit, rest) = if let Some(rest) = w.strip_prefix("::") {
        (None, rest)
    } else if let Some(rest) = w.strip_prefix("unit():") {
        (None, rest)
    } else {
        match w.split_once(':') {
            Some((u, rest)) if is_name(u) => (Some(u.to_owned()), rest),
            _ => {
                return Err(err(
                    col,
                    format!(
                        "{w:?} is not a reference (unit:job:setting, or ::job:setting for this unit)"
                    ),
                ));
            }
        }
    };
    let Some((job, setting)) = rest.split_once(':') else {
        return Err(err(
            col,
            format!("{w:?} names no setting (unit:job:setting)"),
        ));
    };
    let mut parts = setting.split('.');
    let setting = parts.next().unwrap_or_default();
    let path: Vec<String> = parts.map(str::to_owned).collect();
    if !is_name(job) || !is_name(setting) || path.iter().any(|p| !is_name(p)) {
        return Err(err(
            col,
            format!(
                "{w:?} is not a reference (unit:job:setting, names of letters, digits, '_' and '-')"
            ),
        ));
    }
    Ok(Expr::Ref {
        unit,
        job: job.to_owned(),
        setting: setting.to_owned(),
        path,
    })
}

/// Parses an expression.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    if src.chars().count() > MAX_LEN {
        return Err(err(
            0,
            format!("an expression has at most {MAX_LEN} characters"),
        ));
    }
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(err(0, "the expression is empty"));
    }
    let mut p = Parser {
        toks,
        at: 0,
        end: src.chars().count() + 1,
    };
    let e = p.expr(0, 0)?;
    if let Some((col, t)) = p.toks.get(p.at) {
        return Err(err(
            *col,
            format!("unexpected {} after a whole expression", describe(t)),
        ));
    }
    Ok(e)
}

/// What an expression reads while it is evaluated.
pub trait Scope {
    /// The profile's input `name`.
    fn input(&self, name: &str) -> Option<Value>;
    /// The action's unit, experiment and job.
    fn builtin(&self, b: Builtin) -> Value;
    /// Setting or latest value `setting` of `job` on `unit` (`None`: the action's own unit);
    /// `Err` says why it cannot be read (no such unit, the job does not run, ...).
    fn reference(&self, unit: Option<&str>, job: &str, setting: &str) -> Result<Value, String>;
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn number(v: &Value, what: &str) -> Result<f64, ExprError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| err(0, format!("{what} is not a number"))),
        // A setting echoed as text ("700.0") compares as the number it holds.
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| err(0, format!("{what} is {s:?}, not a number"))),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        other => Err(err(0, format!("{what} is {other}, not a number"))),
    }
}

fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Evaluates `e` in `scope`.
pub fn eval(e: &Expr, scope: &dyn Scope) -> Result<Value, ExprError> {
    Ok(match e {
        Expr::Number(n) => num(*n),
        Expr::Text(s) => Value::String(s.clone()),
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Input(name) => scope
            .input(name)
            .ok_or_else(|| err(0, format!("no input named {name:?}")))?,
        Expr::Call(b) => scope.builtin(*b),
        Expr::Ref {
            unit,
            job,
            setting,
            path,
        } => {
            let mut v = scope
                .reference(unit.as_deref(), job, setting)
                .map_err(|m| err(0, m))?;
            for key in path {
                v = match v {
                    Value::Object(mut o) => o
                        .remove(key)
                        .ok_or_else(|| err(0, format!("{job}:{setting} has no {key:?}")))?,
                    Value::String(s) => match serde_json::from_str::<Value>(&s) {
                        Ok(Value::Object(mut o)) => o
                            .remove(key)
                            .ok_or_else(|| err(0, format!("{job}:{setting} has no {key:?}")))?,
                        _ => return Err(err(0, format!("{job}:{setting} is not a JSON object"))),
                    },
                    _ => return Err(err(0, format!("{job}:{setting} is not a JSON object"))),
                };
            }
            v
        }
        Expr::Unary(UnaryOp::Not, x) => Value::Bool(!truthy(&eval(x, scope)?)),
        Expr::Unary(UnaryOp::Neg, x) => num(-number(&eval(x, scope)?, "the operand of '-'")?),
        Expr::Binary(BinOp::And, a, b) => {
            Value::Bool(truthy(&eval(a, scope)?) && truthy(&eval(b, scope)?))
        }
        Expr::Binary(BinOp::Or, a, b) => {
            Value::Bool(truthy(&eval(a, scope)?) || truthy(&eval(b, scope)?))
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, scope)?, eval(b, scope)?);
            match op {
                BinOp::Eq | BinOp::Ne => {
                    let same = match (number(&a, ""), number(&b, "")) {
                        (Ok(x), Ok(y)) if !a.is_string() || !b.is_string() => x == y,
                        _ => a == b,
                    };
                    Value::Bool(same == (*op == BinOp::Eq))
                }
                BinOp::Add if a.is_string() && b.is_string() => Value::String(format!(
                    "{}{}",
                    a.as_str().unwrap_or_default(),
                    b.as_str().unwrap_or_default()
                )),
                _ => {
                    let x = number(&a, "the left operand")?;
                    let y = number(&b, "the right operand")?;
                    match op {
                        BinOp::Lt => Value::Bool(x < y),
                        BinOp::Le => Value::Bool(x <= y),
                        BinOp::Gt => Value::Bool(x > y),
                        BinOp::Ge => Value::Bool(x >= y),
                        BinOp::Add => num(x + y),
                        BinOp::Sub => num(x - y),
                        BinOp::Mul => num(x * y),
                        BinOp::Div if y == 0.0 => return Err(err(0, "division by zero")),
                        BinOp::Div => num(x / y),
                        _ => Value::Null,
                    }
                }
            }
        }
    })
}

/// Whether `e` holds true in `scope` (nonzero numbers and non-empty strings are true).
pub fn holds(e: &Expr, scope: &dyn Scope) -> Result<bool, ExprError> {
    eval(e, scope).map(|v| truthy(&v))
}

/// Every reference in `e`, for validation before anything runs.
pub fn references(e: &Expr, out: &mut Vec<(Option<String>, String, String)>) {
    match e {
        Expr::Ref {
            unit, job, setting, ..
        } => out.push((unit.clone(), job.clone(), setting.clone())),
        Expr::Unary(_, x) => references(x, out),
        Expr::Binary(_, a, b) => {
            references(a, out);
            references(b, out);
        }
        _ => {}
    }
}

/// Every input name `e` reads.
pub fn inputs(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Input(n) => out.push(n.clone()),
        Expr::Unary(_, x) => inputs(x, out),
        Expr::Binary(_, a, b) => {
            inputs(a, out);
            inputs(b, out);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct S;
    impl Scope for S {
        fn input(&self, name: &str) -> Option<Value> {
            (name == "target").then(|| json!(30))
        }
        fn builtin(&self, b: Builtin) -> Value {
            json!(match b {
                Builtin::Unit => "pio-1",
                Builtin::Experiment => "exp",
                Builtin::JobName => "stirring",
            })
        }
        fn reference(&self, unit: Option<&str>, job: &str, setting: &str) -> Result<Value, String> {
            match (unit.unwrap_or("pio-1"), job, setting) {
                ("pio-1", "od_reading", "od1") => Ok(json!({"od": 1.25})),
                ("pio-1", "stirring", "target_rpm") => Ok(json!("700.0")),
                ("pio-2", "stirring", "target_rpm") => Ok(json!(400)),
                (u, j, s) => Err(format!("{u} has no {j}:{s}")),
            }
        }
    }

    fn ev(src: &str) -> Value {
        eval(&parse(src).unwrap(), &S).unwrap()
    }

    #[test]
    fn arithmetic_logic_and_comparisons_evaluate_as_written() {
        assert_eq!(ev("1 + 2 * 3"), json!(7.0));
        assert_eq!(ev("(1 + 2) * 3 / 2"), json!(4.5));
        assert_eq!(ev("-target + 5"), json!(-25.0));
        assert_eq!(ev("target * 2 > 50 and not False"), json!(true));
        assert_eq!(ev("1 > 2 or 2 >= 2"), json!(true));
        assert_eq!(ev("'a' + \"b\" == 'ab'"), json!(true));
        assert_eq!(ev("unit() == 'pio-1' and experiment() != 'x'"), json!(true));
        assert_eq!(ev("1e3 == 1000"), json!(true));
    }

    #[test]
    fn references_read_settings_on_units_and_index_json() {
        assert_eq!(ev("::od_reading:od1.od > 1.0"), json!(true));
        assert_eq!(ev("unit():od_reading:od1.od"), json!(1.25));
        assert_eq!(ev("pio-1:stirring:target_rpm == 700"), json!(true));
        assert_eq!(ev("pio-2:stirring:target_rpm + 100"), json!(500.0));
        let e = eval(&parse("pio-3:stirring:target_rpm").unwrap(), &S).unwrap_err();
        assert_eq!(e.message, "pio-3 has no stirring:target_rpm");
        let mut refs = Vec::new();
        references(&parse("::a:b > pio-2:c:d.e").unwrap(), &mut refs);
        assert_eq!(
            refs,
            [
                (None, "a".into(), "b".into()),
                (Some("pio-2".into()), "c".into(), "d".into())
            ]
        );
    }

    #[test]
    fn bad_expressions_say_where_and_what() {
        for (src, column, words) in [
            ("1 +", 4, "ends where a value should be"),
            ("(1 + 2", 7, "'(' is not closed"),
            ("1 2", 3, "unexpected number 2"),
            ("'open", 1, "not closed"),
            ("1 # 2", 3, "unexpected character '#'"),
            ("foo()", 1, "unknown function foo()"),
            ("pio:stirring", 1, "names no setting"),
            ("", 0, "empty"),
        ] {
            let e = parse(src).unwrap_err();
            assert_eq!(e.column, column, "{src}: {e}");
            assert!(e.message.contains(words), "{src}: {e}");
        }
        let e = eval(&parse("1 / 0").unwrap(), &S).unwrap_err();
        assert_eq!(e.message, "division by zero");
        let e = eval(&parse("nope + 1").unwrap(), &S).unwrap_err();
        assert!(e.message.contains("no input named \"nope\""), "{e}");
        let deep = "(".repeat(100) + "1" + &")".repeat(100);
        assert!(parse(&deep).unwrap_err().message.contains("too deeply"));
    }
}
