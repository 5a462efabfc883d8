//! `sparseburn methods`, the switch list after `train --help`, and the table of
//! `docs/methods.md`: all written from the registry, so a new method appears
//! in each without editing them.

use std::fmt::Write as _;

use serde_json::Value;
use sparse_methods::registry;

/// A switch's default as it is typed after `-m key=`.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A switch's type, from its default value.
fn type_text(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "text",
        Value::Array(_) => "list",
        _ => "table",
    }
}

/// Every method with its switches, for the terminal.
pub fn listing() -> String {
    let setting = |key: &str, default: &Value| format!("{key}={}", value_text(default));
    let width = registry::methods()
        .iter()
        .flat_map(|m| m.defaults())
        .map(|(switch, default)| setting(switch.key, &default).chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for m in registry::methods() {
        let _ = writeln!(s, "{:<11} {}", m.name, m.summary);
        for (switch, default) in m.defaults() {
            let _ = writeln!(
                s,
                "    -m {:<width$} {} ({})",
                setting(switch.key, &default),
                switch.doc,
                type_text(&default)
            );
        }
    }
    s
}

/// The switch list shown after `sparseburn train --help`.
pub fn switch_help() -> String {
    format!("Method switches (-m KEY=VALUE), with their defaults:\n{}", listing())
}

/// The Markdown tables of `docs/methods.md`: the methods, then every switch.
pub fn markdown() -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| method | what it does | needs data at init | changes the mask during training | sparse execution |\n|---|---|---|---|---|"
    );
    for m in registry::methods() {
        // the property of the method as a run builds it with its defaults
        let execution = m
            .default_config()
            .build(&sparse_methods::BuildContext::new(1000))
            .map_or("–", |built| built.sparse_execution().describe());
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {execution} |",
            m.name, m.summary, m.needs_data, m.changes_mask
        );
    }
    let _ = writeln!(
        s,
        "\n| method | switch (`-m key=value`) | type | default | meaning |\n|---|---|---|---|---|"
    );
    for m in registry::methods() {
        for (switch, default) in m.defaults() {
            let _ = writeln!(
                s,
                "| `{}` | `{}` | {} | `{}` | {} |",
                m.name,
                switch.key,
                type_text(&default),
                value_text(&default),
                switch.doc
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_aligns_every_switch_s_meaning_in_one_column() {
        let text = listing();
        let switch_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("    -m ")).collect();
        assert!(switch_lines.len() > 10, "{text}");
        // the meaning starts after the padded `key=value` and its separating space
        let column = |line: &str| {
            let after = &line["    -m ".len()..];
            let setting_end = after.find(' ').expect("a space after key=value");
            let pad = after[setting_end..].chars().take_while(|c| *c == ' ').count();
            "    -m ".len() + after[..setting_end].chars().count() + pad
        };
        let first = column(switch_lines[0]);
        for line in &switch_lines {
            assert_eq!(column(line), first, "misaligned: {line}");
        }
    }
}
