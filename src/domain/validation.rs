//! Collecting every offending field of a request instead of stopping at the first,
//! so a client can fix a form in one round trip.

use serde::Serialize;

/// One rejected input: a JSON-pointer-like path (`variants[2].sku`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field in the request body, e.g. `variants[1].prices[0].amount`.
    pub field: String,
    /// Stable machine-readable reason, e.g. `too_long`, `invalid`, `duplicate`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Accumulates field errors while a request is being parsed into domain types.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, code: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), code: code.to_owned(), message: message.into() });
    }

    /// Records the error of `result` under `field` and returns the value if it was valid.
    pub fn check<T>(&mut self, field: impl Into<String>, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError { field: field.into(), code: e.code.to_owned(), message: e.message });
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, otherwise every recorded error.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() { Ok(value()) } else { Err(self.0) }
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// Why a single value was rejected by a `parse` function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Invalid {}

/// Trims and bounds a required piece of text.
pub fn required_text(value: &str, max_chars: usize) -> Result<String, Invalid> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Invalid::new("required", "must not be empty"));
    }
    if v.chars().count() > max_chars {
        return Err(Invalid::new("too_long", format!("must be at most {max_chars} characters")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Invalid::new("invalid", "must not contain control characters"));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_text_trims_and_bounds() {
        assert_eq!(required_text("  Shirt ", 10).unwrap(), "Shirt");
        assert_eq!(required_text("   ", 10).unwrap_err().code, "required");
        assert_eq!(required_text("abcdefghijk", 10).unwrap_err().code, "too_long");
        assert_eq!(required_text("a\u{0}b", 10).unwrap_err().code, "invalid");
    }

    #[test]
    fn finish_reports_every_error() {
        let mut errors = FieldErrors::new();
        errors.check("title", required_text("", 5));
        errors.check("brand", required_text("toolongvalue", 5));
        let all = errors.finish(|| ()).unwrap_err();
        assert_eq!(all.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["title", "brand"]);
    }
}
