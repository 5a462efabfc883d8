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
    let mut s = String::new();
    for m in registry::methods() {
        let _ = writeln!(s, "{:<11} {}", m.name, m.summary);
        for (switch, default) in m.defaults() {
            let _ = writeln!(
                s,
                "    -m {}={:<14} {} ({})",
                switch.key,
                value_text(&default),
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
        "| method | what it does | needs data at init | changes the mask during training |\n|---|---|---|---|"
    );
    for m in registry::methods() {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} |",
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
