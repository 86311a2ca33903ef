//! The little SQL interface both backends speak.
//!
//! The domain operations (`ops`) are written once, against [`Db`]: a
//! connection or open transaction that runs a statement with positional
//! parameters (`?1`, `?2`, … in the SQL text) and hands back rows of
//! [`Value`]s. SQLite runs that text as is; PostgreSQL gets `$1`, `$2`, ….
//! Keeping the interface this small is what lets one body of SQL, and one
//! test suite, hold for both.
//!
//! Portability rules the SQL keeps: an optional filter is written
//! `(CAST(?N AS TEXT) IS NULL OR col = ?N)` (PostgreSQL must be able to type
//! every parameter); no `GROUP_CONCAT`/`string_agg`; booleans are `TRUE`/`FALSE`.

use latch_core::Timestamp;

use crate::{Result, StoreError};

/// One SQL value. Booleans are their own kind because PostgreSQL types them
/// strictly; SQLite stores them as 0/1 and [`Row::get`] accepts either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
}

/// Conversion into a [`Value`], by reference, so that `args!` never moves.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for Timestamp {
    fn to_value(&self) -> Value {
        Value::Int(self.millis())
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// `args![a, b, …]`: statement parameters, in `?1, ?2, …` order (borrowed, never moved).
#[macro_export]
macro_rules! args {
    () => { &[] as &[$crate::sql::Value] };
    ($($v:expr),+ $(,)?) => { &[$($crate::sql::ToValue::to_value(&$v)),+] as &[$crate::sql::Value] };
}

/// One result row.
#[derive(Clone, Debug)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i`, converted; a type mismatch is a backend error naming the column.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(v).ok_or_else(|| StoreError::Backend(format!("column {i}: unexpected value {v:?}")))
    }
}

/// Conversion out of a [`Value`].
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Timestamp {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(Timestamp)
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A connection (or open transaction) of either backend.
pub trait Db {
    /// Runs a statement; returns the number of rows it changed.
    fn exec(&self, sql: &str, args: &[Value]) -> Result<u64>;
    /// Runs a query; returns every row.
    fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>>;

    /// The first row of a query, if any.
    fn query_opt(&self, sql: &str, args: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
    /// Every row of a query, each converted by `f`.
    fn query_map<T>(&self, sql: &str, args: &[Value], f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>>
    where
        Self: Sized,
    {
        self.query(sql, args)?.iter().map(f).collect()
    }
}

/// `query_map` for trait objects.
pub fn map_rows<T>(db: &dyn Db, sql: &str, args: &[Value], f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    db.query(sql, args)?.iter().map(f).collect()
}

/// The first row of a query, converted by `f`.
pub fn map_opt<T>(db: &dyn Db, sql: &str, args: &[Value], f: impl Fn(&Row) -> Result<T>) -> Result<Option<T>> {
    db.query_opt(sql, args)?.as_ref().map(f).transpose()
}

/// Rewrites `?N` placeholders as PostgreSQL's `$N`. Only a `?` followed by a
/// digit is a placeholder; our SQL has no `?` in string literals.
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE x = ?1 AND (?2 IS NULL OR y = ?2) LIMIT ?10"),
            "SELECT a FROM t WHERE x = $1 AND ($2 IS NULL OR y = $2) LIMIT $10"
        );
        assert_eq!(dollar_placeholders("a ? b"), "a ? b");
    }

    #[test]
    fn rows_convert_with_sqlite_booleans() {
        let r = Row(vec![Value::Int(1), Value::Null, Value::Text("x".into()), Value::Bool(false)]);
        assert!(r.get::<bool>(0).unwrap());
        assert_eq!(r.get::<Option<String>>(1).unwrap(), None);
        assert_eq!(r.get::<String>(2).unwrap(), "x");
        assert!(!r.get::<bool>(3).unwrap());
        assert!(r.get::<i64>(2).is_err());
        assert_eq!(r.get::<Option<i64>>(9).unwrap(), None);
    }

    #[test]
    fn args_macro_converts() {
        let a: &[Value] = args!["a", 2i64, true, None::<String>];
        assert_eq!(a, &[Value::Text("a".into()), Value::Int(2), Value::Bool(true), Value::Null]);
    }
}
