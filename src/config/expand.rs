//! `${VAR}` expansion of configuration values.
//!
//! Secrets (and anything else that differs between installations) are kept out of the file
//! by writing `${NAME}`; the value comes from the environment (a systemd `EnvironmentFile=`,
//! for instance). `$${` writes a literal `${`. A `$` not followed by `{` is kept as it is, so
//! passwords written literally may contain `$`.

use thiserror::Error;

/// Why a value could not be expanded. Messages name variables, never their values.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ExpandError {
    /// The variable is not set.
    #[error(
        "environment variable `{0}` is not set; set it (e.g. in the service's EnvironmentFile) or write the value directly"
    )]
    Unset(String),
    /// The variable is set but empty.
    #[error("environment variable `{0}` is empty; set it to a non-empty value")]
    Empty(String),
    /// `${` without a closing `}`.
    #[error("`${{` without a closing `}}`; write `${{NAME}}`, or `$${{` for a literal `${{`")]
    Unterminated,
    /// A name outside `[A-Za-z_][A-Za-z0-9_]*`.
    #[error(
        "`${{{0}}}` is not a valid variable name: use letters, digits and `_`, not starting with a digit"
    )]
    BadName(String),
}

/// Replaces every `${NAME}` in `text` with the value `env` returns for `NAME`.
///
/// # Errors
/// The first variable that is unset, empty or malformed; see [`ExpandError`].
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            // `$${` is the escape for a literal `${`.
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(ExpandError::Unterminated)?;
            let name = &tail[..end];
            if !valid_name(name) {
                return Err(ExpandError::BadName(name.to_owned()));
            }
            match env(name) {
                None => return Err(ExpandError::Unset(name.to_owned())),
                Some(v) if v.is_empty() => return Err(ExpandError::Empty(name.to_owned())),
                Some(v) => out.push_str(&v),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cret$x".into()),
            "EMPTY" => Some(String::new()),
            "HOST" => Some("csms.example.com".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_variables_anywhere_in_the_value() {
        assert_eq!(expand("${PW}", &env), Ok("s3cret$x".into()));
        assert_eq!(
            expand("wss://${HOST}/ocpp", &env),
            Ok("wss://csms.example.com/ocpp".into())
        );
        assert_eq!(expand("a${PW}b${HOST}", &env).map(|s| s.len()), Ok(26));
    }

    #[test]
    fn keeps_plain_dollars_and_unescapes_double_dollar() {
        assert_eq!(expand("pa$$word$", &env), Ok("pa$$word$".into()));
        assert_eq!(expand("$${PW}", &env), Ok("${PW}".into()));
    }

    #[test]
    fn names_the_variable_that_is_missing_or_empty() {
        assert_eq!(
            expand("${NOPE}", &env),
            Err(ExpandError::Unset("NOPE".into()))
        );
        assert_eq!(
            expand("x${EMPTY}", &env),
            Err(ExpandError::Empty("EMPTY".into()))
        );
        assert_eq!(expand("${PW", &env), Err(ExpandError::Unterminated));
        assert_eq!(
            expand("${1X}", &env),
            Err(ExpandError::BadName("1X".into()))
        );
        assert_eq!(
            expand("${}", &env),
            Err(ExpandError::BadName(String::new()))
        );
    }

    #[test]
    fn values_of_variables_are_not_expanded_again() {
        let env = |n: &str| (n == "A").then(|| "${B}".to_owned());
        assert_eq!(expand("${A}", &env), Ok("${B}".into()));
    }
}
