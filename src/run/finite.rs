//! Every number of a config must be finite. TOML has `nan` and `inf`, the
//! command line parses them as floats, and JSON (which the configs go through)
//! turns them into `null`; a NaN learning rate, warm-up or sparsity is refused
//! here with its key, before anything else reads it.

use anyhow::bail;

/// Refuses the first non-finite number in `table`, naming its key.
pub fn check_finite_numbers(table: &toml::Table) -> anyhow::Result<()> {
    fn walk(value: &toml::Value, path: &mut Vec<String>) -> anyhow::Result<()> {
        match value {
            toml::Value::Float(x) if !x.is_finite() => {
                let key = match path.split_first() {
                    Some((section, rest)) if !rest.is_empty() => format!("[{section}] {}", rest.join(".")),
                    _ => path.join("."),
                };
                bail!("{key} = {x}: every number must be finite");
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    path.push(k.clone());
                    walk(v, path)?;
                    path.pop();
                }
                Ok(())
            }
            toml::Value::Array(a) => a.iter().try_for_each(|v| walk(v, path)),
            _ => Ok(()),
        }
    }
    walk(&toml::Value::Table(table.clone()), &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_are_named_and_finite_numbers_pass() {
        let ok: toml::Table = toml::from_str("[training]\nlr = 0.1\nmilestones = [1, 2]").unwrap();
        check_finite_numbers(&ok).unwrap();
        let nan: toml::Table = toml::from_str("[training]\nwarmup_epochs = nan").unwrap();
        let e = check_finite_numbers(&nan).unwrap_err().to_string();
        assert!(e.contains("[training] warmup_epochs = NaN"), "{e}");
        let inf: toml::Table = toml::from_str("[method]\nname = \"rigl\"\nend_fraction = -inf").unwrap();
        let e = check_finite_numbers(&inf).unwrap_err().to_string();
        assert!(e.contains("[method] end_fraction = -inf"), "{e}");
    }
}
