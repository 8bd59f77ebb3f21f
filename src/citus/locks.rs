//! The locks a distribution batch takes before its statements: what each
//! statement locks on the tables and sequences the application writes,
//! merged into one set per batch (the strongest mode per object), so the
//! batch can take them all before its first statement runs
//! ([`crate::db::run_txn_locked`]) instead of meeting them one by one
//! inside Citus's calls, where a wait for one while holding another can
//! close a cycle with an application transaction.

use serde::Serialize;

use crate::catalog::{Catalog, QName};
use crate::sql::ident;

/// A table lock mode, weakest first. Each conflicts with the application's
/// writes (ROW EXCLUSIVE); the stronger also with its reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Mode {
    /// What creating a foreign key takes on both tables.
    ShareRowExclusive,
    /// What copying a table into shards takes: reads go on.
    Exclusive,
    /// What dropping a key, truncating or Citus's conversion takes.
    AccessExclusive,
}

impl Mode {
    fn sql(self) -> &'static str {
        match self {
            Mode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Mode::Exclusive => "EXCLUSIVE",
            Mode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }
}

/// One object a statement locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lock {
    Table {
        table: QName,
        mode: Mode,
    },
    /// A sequence a column owns: Citus alters it when it takes the table
    /// over (SHARE ROW EXCLUSIVE, which waits for every transaction that
    /// called nextval on it).
    Sequence {
        sequence: QName,
        table: QName,
        column: String,
    },
}

impl Lock {
    pub fn table(table: &QName, mode: Mode) -> Lock {
        Lock::Table {
            table: table.clone(),
            mode,
        }
    }

    /// The statement that takes it and changes nothing: `LOCK TABLE`, or
    /// for a sequence an `ALTER SEQUENCE … OWNED BY` naming the owner it
    /// already has (`LOCK` does not take sequences).
    pub fn sql(&self) -> String {
        match self {
            Lock::Table { table, mode } => {
                format!("LOCK TABLE {} IN {} MODE;", table.sql(), mode.sql())
            }
            Lock::Sequence {
                sequence,
                table,
                column,
            } => format!(
                "ALTER SEQUENCE {} OWNED BY {}.{};",
                sequence.sql(),
                table.sql(),
                ident(column)
            ),
        }
    }

    fn same_object(&self, other: &Lock) -> bool {
        match (self, other) {
            (Lock::Table { table: a, .. }, Lock::Table { table: b, .. }) => a == b,
            (Lock::Sequence { sequence: a, .. }, Lock::Sequence { sequence: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// The locks of several statements as one set: each object once, in the
/// order it first appears, at the strongest mode asked for it.
pub fn merge<'a>(locks: impl IntoIterator<Item = &'a Lock>) -> Vec<Lock> {
    let mut out: Vec<Lock> = Vec::new();
    for l in locks {
        match out.iter_mut().find(|o| o.same_object(l)) {
            Some(Lock::Table { mode, .. }) => {
                if let Lock::Table { mode: m, .. } = l {
                    *mode = (*mode).max(*m);
                }
            }
            Some(_) => {}
            None => out.push(l.clone()),
        }
    }
    out
}

/// `t` at `mode` and the sequences its columns own: what Citus takes when
/// it takes a table over.
pub fn table_and_sequences(cat: &Catalog, t: &QName, mode: Mode) -> Vec<Lock> {
    let mut l = vec![Lock::table(t, mode)];
    l.extend(owned_sequences(cat, t));
    l
}

/// The sequences `t`'s columns own (serial columns; identity columns are
/// part of the table), which Citus alters when it takes `t` over.
fn owned_sequences(cat: &Catalog, t: &QName) -> Vec<Lock> {
    let Some(tt) = cat.table(t) else {
        return Vec::new();
    };
    cat.sequences
        .iter()
        .filter_map(|q| {
            let owner = q.owned_by.as_ref()?;
            let col = tt.columns.iter().find(|c| c.name == owner.column)?;
            (&owner.table == t && col.identity.is_none()).then(|| Lock::Sequence {
                sequence: q.name.clone(),
                table: t.clone(),
                column: owner.column.clone(),
            })
        })
        .collect()
}

/// `t` and every table whose foreign keys lead to it, directly or through
/// others: what `TRUNCATE t CASCADE` locks.
pub fn cascade(cat: &Catalog, t: &QName) -> Vec<QName> {
    let mut out = vec![t.clone()];
    let mut i = 0;
    while i < out.len() {
        let target = out[i].clone();
        for tt in &cat.tables {
            if tt.foreign_keys.iter().any(|fk| fk.ref_table == target) && !out.contains(&tt.name) {
                out.push(tt.name.clone());
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_first_order_and_strongest_mode() {
        let a = QName::new("public", "a");
        let b = QName::new("public", "b");
        let locks = [
            Lock::table(&a, Mode::ShareRowExclusive),
            Lock::table(&b, Mode::Exclusive),
            Lock::table(&a, Mode::AccessExclusive),
            Lock::table(&b, Mode::ShareRowExclusive),
        ];
        assert_eq!(
            merge(&locks),
            [
                Lock::table(&a, Mode::AccessExclusive),
                Lock::table(&b, Mode::Exclusive)
            ]
        );
        assert_eq!(
            merge(&locks)[0].sql(),
            "LOCK TABLE \"public\".\"a\" IN ACCESS EXCLUSIVE MODE;"
        );
    }
}
