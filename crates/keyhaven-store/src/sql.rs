//! The one SQL surface both backends share. Statements are written once, with SQLite's
//! numbered parameters (`?1`, `?2`), in the subset of SQL that SQLite and PostgreSQL both
//! accept; PostgreSQL gets them with `$1`, `$2` ([`to_postgres`]). Values cross the
//! boundary as [`Val`] (parameters) and [`Row`] (results): integers, text and NULL are all
//! Keyhaven stores, and no backend type leaves this crate.

use crate::{Result, StoreError};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use std::borrow::Cow;
use std::cell::RefCell;

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// What can be a statement parameter.
pub trait ToVal {
    fn val(&self) -> Val<'_>;
}

impl ToVal for i64 {
    fn val(&self) -> Val<'_> {
        Val::Int(*self)
    }
}
impl ToVal for u16 {
    fn val(&self) -> Val<'_> {
        Val::Int((*self).into())
    }
}
impl ToVal for bool {
    fn val(&self) -> Val<'_> {
        Val::Int((*self).into())
    }
}
impl ToVal for str {
    fn val(&self) -> Val<'_> {
        Val::Text(self)
    }
}
impl ToVal for String {
    fn val(&self) -> Val<'_> {
        Val::Text(self)
    }
}
impl<T: ToVal> ToVal for Option<T> {
    fn val(&self) -> Val<'_> {
        self.as_ref().map_or(Val::Null, ToVal::val)
    }
}
impl<T: ToVal + ?Sized> ToVal for &T {
    fn val(&self) -> Val<'_> {
        (**self).val()
    }
}

/// `p![a, b]`: a parameter list.
macro_rules! p {
    ($($v:expr),* $(,)?) => { &[$($crate::sql::ToVal::val(&$v)),*] };
}
pub(crate) use p;

/// A stored value, as read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// One result row.
#[derive(Debug)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("result has no column {i}")))
    }
    pub fn int(&self, i: usize) -> Result<i64> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected an integer, found {other:?}"
            ))),
        }
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }
    pub fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }
    pub fn port(&self, i: usize) -> Result<u16> {
        let v = self.int(i)?;
        u16::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {i}: bad port {v}")))
    }
    pub fn text(&self, i: usize) -> Result<String> {
        match self.at(i)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, found {other:?}"
            ))),
        }
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
}

/// A transaction: every query and change of the store goes through one.
pub struct Tx<'a> {
    pub(crate) inner: Inner<'a>,
}

pub(crate) enum Inner<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    Postgres(RefCell<postgres::Transaction<'a>>),
}

impl Tx<'_> {
    /// The database's own clock, µs since the epoch, as an SQL expression: what instances
    /// on different hosts compare (a heartbeat's age), so no two hosts' clocks are.
    pub(crate) fn now_sql(&self) -> &'static str {
        match &self.inner {
            Inner::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
            Inner::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub(crate) fn exec(&self, sql: &str, params: &[Val<'_>]) -> Result<u64> {
        match &self.inner {
            Inner::Sqlite(tx) => Ok(tx
                .execute(sql, rusqlite::params_from_iter(params.iter()))
                .map_err(crate::sqlite::error)? as u64),
            Inner::Postgres(tx) => {
                let args: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                tx.borrow_mut()
                    .execute(to_postgres(sql).as_ref(), &args)
                    .map_err(crate::postgres::error)
            }
        }
    }

    /// Runs a query; returns every row.
    pub(crate) fn rows(&self, sql: &str, params: &[Val<'_>]) -> Result<Vec<Row>> {
        match &self.inner {
            Inner::Sqlite(tx) => {
                let mut stmt = tx.prepare_cached(sql).map_err(crate::sqlite::error)?;
                let n = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                        (0..n)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => Value::Null,
                                    rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        Value::Text(String::from_utf8_lossy(t).into_owned())
                                    }
                                    other => {
                                        return Err(rusqlite::Error::InvalidColumnType(
                                            i,
                                            "unexpected".into(),
                                            other.data_type(),
                                        ));
                                    }
                                })
                            })
                            .collect::<rusqlite::Result<Vec<_>>>()
                            .map(Row)
                    })
                    .map_err(crate::sqlite::error)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(crate::sqlite::error)
            }
            Inner::Postgres(tx) => {
                let args: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = tx
                    .borrow_mut()
                    .query(to_postgres(sql).as_ref(), &args)
                    .map_err(crate::postgres::error)?;
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.try_get::<_, Value>(i)
                                    .map_err(|e| StoreError::Corrupt(e.to_string()))
                            })
                            .collect::<Result<Vec<_>>>()
                            .map(Row)
                    })
                    .collect()
            }
        }
    }

    /// Runs a query; returns its first row, if any.
    pub(crate) fn row(&self, sql: &str, params: &[Val<'_>]) -> Result<Option<Row>> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as V, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Owned(V::Null),
            Val::Int(v) => ToSqlOutput::Owned(V::Integer(*v)),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

/// Parameters take the type PostgreSQL inferred for their place: Keyhaven's integers are
/// BIGINT columns, but a parameter compared with a literal may be inferred as INTEGER.
impl ToSql for Val<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
            Val::Text(t) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::UNKNOWN => t.to_sql(ty, out),
                _ => Err(format!("text cannot be sent as {ty}").into()),
            },
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

impl<'a> postgres::types::FromSql<'a> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }
    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }
    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::TEXT
                | Type::VARCHAR
                | Type::NAME
        )
    }
}

/// `?1` → `$1`. Keyhaven's statements hold no `?` inside string literals.
pub(crate) fn to_postgres(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    Cow::Owned(sql.replace('?', "$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_postgres_ones() {
        assert_eq!(
            to_postgres("UPDATE t SET a = ?2 WHERE id = ?1 AND b = ?2"),
            "UPDATE t SET a = $2 WHERE id = $1 AND b = $2"
        );
        assert_eq!(to_postgres("SELECT 1"), "SELECT 1");
    }
}
