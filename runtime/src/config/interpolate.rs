//! `${ENV_VAR}` and `${ENV_VAR:-default}` in string values of the config file.
//!
//! Interpolation runs on parsed string values, not on the raw text, so a variable's content
//! can never change the structure of the file. `$${` writes a literal `${`.

/// Replaces variables in every string of `value`; on failure returns the key path and why.
pub(crate) fn interpolate_env(
    value: &mut toml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    walk(value, String::new(), lookup)
}

fn walk(
    value: &mut toml::Value,
    path: String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            *s = expand(s, lookup).map_err(|message| (path, message))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), lookup)?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(item, child, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {text:?}"))?;
            let expr = &tail[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{expr}}}` is not a valid environment variable reference"
                ));
            }
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write `${{{name}:-default}}` for a default)"
                    ));
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        (name == "HOST").then(|| "127.0.0.1".to_owned())
    }

    #[test]
    fn expands_set_variables_defaults_and_escapes() {
        assert_eq!(
            expand("pulsar://${HOST}:6650", &env).unwrap(),
            "pulsar://127.0.0.1:6650"
        );
        assert_eq!(expand("${PORT:-9092}", &env).unwrap(), "9092");
        assert_eq!(
            expand("$${HOST} costs $5", &env).unwrap(),
            "${HOST} costs $5"
        );
    }

    #[test]
    fn names_the_missing_variable() {
        let err = expand("${NOPE}", &env).unwrap_err();
        assert!(err.contains("NOPE is not set"), "{err}");
        assert!(expand("${HOST", &env).unwrap_err().contains("unclosed"));
        assert!(expand("${1X}", &env).unwrap_err().contains("not a valid"));
    }
}
