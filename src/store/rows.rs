//! Decoding `Any` rows into domain values. Text columns hold ids and JSON, so a
//! value that fails to parse means the stored data is corrupt, not bad input.

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{StoreError, StoreResult};

pub fn text(row: &AnyRow, col: &str) -> StoreResult<String> {
    Ok(row.try_get::<String, _>(col)?)
}

pub fn opt_text(row: &AnyRow, col: &str) -> StoreResult<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

pub fn int(row: &AnyRow, col: &str) -> StoreResult<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}

pub fn opt_int(row: &AnyRow, col: &str) -> StoreResult<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

/// Flags are stored as 0/1 integers: `Any` cannot decode SQLite's BOOLEAN.
pub fn flag(row: &AnyRow, col: &str) -> StoreResult<bool> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

pub fn id(row: &AnyRow, col: &str) -> StoreResult<Uuid> {
    let raw = text(row, col)?;
    Uuid::parse_str(&raw).map_err(|_| StoreError::Corrupt(format!("{col} is not a UUID: {raw}")))
}

pub fn opt_id(row: &AnyRow, col: &str) -> StoreResult<Option<Uuid>> {
    opt_text(row, col)?
        .map(|raw| Uuid::parse_str(&raw).map_err(|_| StoreError::Corrupt(format!("{col} is not a UUID: {raw}"))))
        .transpose()
}

pub fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> StoreResult<T> {
    let raw = text(row, col)?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub fn opt_json(row: &AnyRow, col: &str) -> StoreResult<Option<serde_json::Value>> {
    opt_text(row, col)?.map(|raw| serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))).transpose()
}

pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain data structures cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}
