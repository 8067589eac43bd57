//! Just enough reading of PromQL for the checks: which metrics an
//! expression selects, Grafana's variables replaced by what a plain
//! Prometheus accepts, and an alert's expression cut into the parts that
//! must return data when the alert's metrics exist.
//!
//! Whether an expression is valid PromQL at all is Prometheus' own
//! business: `promtool check rules` and the real server decide that (see
//! [`crate::promtool`]). What is here only has to find names, so it reads
//! tokens: strings, `{…}` label matchers and `[…]` ranges are skipped,
//! identifiers followed by `(` are functions, and the label lists after
//! `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` are
//! labels, not metrics.

use std::collections::BTreeSet;

/// Keywords that are followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Keywords, aggregation operators (which may be followed by `by (…)`
/// rather than `(`) and literals: never metric names.
const KEYWORDS: [&str; 22] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Skips a quoted string starting at `i` (the quote); returns the index
/// after its closing quote.
fn skip_string(s: &[char], i: usize) -> usize {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() {
        if s[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if s[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    j
}

/// Skips a bracketed group opened at `i`, strings inside included; returns
/// the index after the matching closer.
fn skip_group(s: &[char], i: usize) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < s.len() {
        match s[j] {
            '"' | '\'' | '`' => {
                j = skip_string(s, j);
                continue;
            }
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

fn skip_space(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The names of the series `expr` selects (recording-rule names included).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '{' || c == '[' {
            i = skip_group(&s, i);
        } else if c == '#' {
            // A comment runs to the end of the line.
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number (1e3, 0x1f, 2.5) or a duration (5m).
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if c == '$' {
            // A Grafana variable outside a matcher.
            i += 1;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let next = skip_space(&s, i);
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if s.get(next) == Some(&'(') {
                    i = skip_group(&s, next);
                }
            } else if s.get(next) == Some(&'(') || KEYWORDS.contains(&lower.as_str()) {
                // A function or aggregation, or a keyword.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The Grafana variables (`$name`, `${name}`) used in `expr`.
pub fn variables(expr: &str) -> BTreeSet<String> {
    let s: Vec<char> = expr.chars().collect();
    let mut vars = BTreeSet::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == '$' {
            let braced = s.get(i + 1) == Some(&'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut j = start;
            while j < s.len() && is_ident(s[j]) {
                j += 1;
            }
            if j > start {
                vars.insert(s[start..j].iter().collect());
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    vars
}

/// `expr` as a plain Prometheus takes it: `$__rate_interval` (and
/// `$__interval`, `$__range`) become `window`, every other variable `.+`
/// (the dashboards use them as `label=~"$var"`, "All" being `.+`).
pub fn substitute(expr: &str, window: &str) -> String {
    let mut out = expr.to_string();
    for v in variables(expr) {
        let with = if v.starts_with("__") { window } else { ".+" };
        out = out.replace(&format!("${{{v}}}"), with);
        out = out.replace(&format!("${v}"), with);
    }
    out
}

/// Top-level operator positions: `(start, end)` of each match of one of
/// `ops` outside any bracket or string. Word operators match whole words.
fn top_level(s: &[char], ops: &[&str]) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(s, i);
            continue;
        }
        if c == '(' || c == '{' || c == '[' {
            i = skip_group(s, i);
            continue;
        }
        let mut matched = None;
        for op in ops {
            let o: Vec<char> = op.chars().collect();
            if s[i..].starts_with(&o) {
                let word = o[0].is_ascii_alphabetic();
                let before_ok = !word || i == 0 || !is_ident(s[i - 1]);
                let after_ok = !word || s.get(i + o.len()).is_none_or(|c| !is_ident(*c));
                if before_ok && after_ok {
                    matched = Some((i, i + o.len(), op.to_string()));
                    break;
                }
            }
        }
        match matched {
            Some(m) => {
                i = m.1;
                found.push(m);
            }
            None if is_ident(c) => {
                // Move over the whole identifier so that `operand` does not
                // match inside `scoreboard`.
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
            }
            None => i += 1,
        }
    }
    found
}

/// Removes one pair of parentheses that wraps the whole expression.
fn unwrap(expr: &str) -> &str {
    let t = expr.trim();
    let s: Vec<char> = t.chars().collect();
    if s.first() == Some(&'(') && skip_group(&s, 0) == s.len() {
        let inner = &t[1..t.len() - 1];
        return unwrap(inner);
    }
    t
}

/// Drops leading vector-matching modifiers (`on (…)`, `ignoring (…)`,
/// `group_left (…)`, `group_right (…)`, `bool`) from the right-hand side
/// of a binary operator.
fn strip_modifiers(expr: &str) -> &str {
    let mut t = expr.trim_start();
    loop {
        let word: String = t.chars().take_while(|c| is_ident(*c)).collect();
        let lower = word.to_ascii_lowercase();
        if lower == "bool" {
            t = t[word.len()..].trim_start();
        } else if ["on", "ignoring", "group_left", "group_right"].contains(&lower.as_str()) {
            let rest = t[word.len()..].trim_start();
            t = if rest.starts_with('(') {
                let s: Vec<char> = rest.chars().collect();
                let end = skip_group(&s, 0);
                let bytes: usize = s[..end].iter().map(|c| c.len_utf8()).sum();
                rest[bytes..].trim_start()
            } else {
                rest
            };
        } else {
            return t;
        }
    }
}

/// The parts of an alert's expression that must return data whenever the
/// series it watches exist: the operands of top-level `and`, `or` and
/// `unless`, each cut at its comparison, keeping the sides that select a
/// series (a threshold such as `21 * 86400` is not kept).
///
/// `a > 5 and on (x) b == 1` gives `["a", "b"]`.
pub fn signals(expr: &str) -> Vec<String> {
    let body = unwrap(strip_modifiers(expr));
    let s: Vec<char> = body.chars().collect();
    let cuts = top_level(&s, &["and", "or", "unless"]);
    if !cuts.is_empty() {
        let mut parts = Vec::new();
        let mut start = 0;
        for (a, b, _) in &cuts {
            parts.push(s[start..*a].iter().collect::<String>());
            start = *b;
        }
        parts.push(s[start..].iter().collect::<String>());
        return parts.iter().flat_map(|p| signals(p)).collect();
    }
    match top_level(&s, &["==", "!=", ">=", "<=", ">", "<"]).first() {
        Some((a, b, _)) => {
            let left: String = s[..*a].iter().collect();
            let right: String = s[*b..].iter().collect();
            let mut out = signals(&left);
            out.extend(signals(&right));
            out
        }
        None if metric_names(body).is_empty() => Vec::new(),
        None => vec![body.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &str) -> Vec<String> {
        metric_names(e).into_iter().collect()
    }

    #[test]
    fn names_skip_functions_labels_matchers_and_numbers() {
        assert_eq!(
            names(
                r#"sum by (instance, node) (rate(twinport_requests_total{code_class="5xx", node=~"$node"}[$__rate_interval]))"#
            ),
            ["twinport_requests_total"]
        );
        assert_eq!(
            names("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 2.5e0"),
            ["x_bucket"]
        );
        assert_eq!(
            names("a / on (instance) group_left (version) b_info offset 5m"),
            ["a", "b_info"]
        );
        assert_eq!(
            names("instance:twinport_requests:rate5m > 1 and up == 0 unless time() < 3 * 86400"),
            ["instance:twinport_requests:rate5m", "up"]
        );
        assert_eq!(names(r#"sum(x) by (node) # a comment naming y"#), ["x"]);
        assert_eq!(names(r#"label_replace(x, "d", "$1", "s", "(.*)")"#), ["x"]);
    }

    #[test]
    fn grafana_variables_are_replaced() {
        assert_eq!(
            substitute(
                r#"rate(x{instance=~"$instance", node=~"${node}"}[$__rate_interval])"#,
                "1m"
            ),
            r#"rate(x{instance=~".+", node=~".+"}[1m])"#
        );
        assert_eq!(
            variables("a{b=~\"$branch\"}[$__range]"),
            ["__range".to_string(), "branch".to_string()].into()
        );
    }

    #[test]
    fn alert_expressions_are_cut_into_their_signals() {
        assert_eq!(signals("up == 0"), ["up"]);
        assert_eq!(
            signals("twinport_node_up == 0\nunless on (instance, node)\n(twinport_node_state{state=~\"a|b\"} == 1)"),
            ["twinport_node_up", "twinport_node_state{state=~\"a|b\"}"]
        );
        assert_eq!(
            signals("min by (i) (exp) - time() < 21 * 86400"),
            ["min by (i) (exp) - time()"]
        );
        assert_eq!(
            signals("max by (b) (longest) > max by (b) (target)"),
            ["max by (b) (longest)", "max by (b) (target)"]
        );
        assert_eq!(
            signals("ratio > 0.05 and on (instance) rate > bool 1"),
            ["ratio", "rate"]
        );
        // Operators inside brackets and words containing operator names.
        assert_eq!(
            signals("sum(rate(x{a!=\"b\", c=~\">\"}[5m])) > 0"),
            ["sum(rate(x{a!=\"b\", c=~\">\"}[5m]))"]
        );
        assert_eq!(signals("scoreboard > 0"), ["scoreboard"]);
        assert_eq!(signals("(a > 1)"), ["a"]);
    }
}
