//! Rule ids: one typed name per finding `analyze` can report, with its
//! page — what Citus says, why, the fix — for `shardready explain RULE` and
//! `docs/rules.md` (generated from [`rules_markdown`]; a test keeps the
//! file in step).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Where a rule's check lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Keys,
    Dependents,
    ForeignKeys,
    Column,
    Triggers,
    Partitioning,
    Sequences,
    NoKey,
    Data,
    Polymorphic,
    Queries,
    LostLookups,
    Skew,
}

impl Family {
    /// The file that checks it.
    pub fn source(self) -> &'static str {
        match self {
            Family::Keys => "src/analyze/rules/keys.rs",
            Family::Dependents => "src/analyze/rules/dependents.rs",
            Family::ForeignKeys => "src/analyze/rules/foreign_keys.rs",
            Family::Column => "src/analyze/rules/column.rs",
            Family::Triggers => "src/analyze/rules/triggers.rs",
            Family::Partitioning => "src/analyze/rules/partitioning.rs",
            Family::Sequences => "src/analyze/rules/sequences.rs",
            Family::NoKey => "src/analyze/rules/no_key.rs",
            Family::Data => "src/analyze/data.rs",
            Family::Polymorphic => "src/analyze/polymorphic.rs",
            Family::Queries => "src/analyze/queries.rs",
            Family::LostLookups => "src/analyze/lost_lookups.rs",
            Family::Skew => "src/analyze/skew.rs",
        }
    }
}

/// A rule's page.
pub struct RuleDoc {
    pub family: Family,
    /// What the rule finds and why it matters.
    pub why: &'static str,
    /// What Citus says when it refuses (None: Citus accepts it, the rule
    /// is about the application or the data).
    pub citus: Option<&'static str>,
    /// How it is fixed: by `plan`/`apply`, or by the user.
    pub fix: &'static str,
}

const KEY_ERROR: &str = "cannot create constraint on \"orders\"\nDETAIL: Distributed relations cannot have UNIQUE, EXCLUDE, or PRIMARY KEY constraints that do not include the partition column (with an equality operator if EXCLUDE).";
/// What Citus says of a join between distributed tables on other columns
/// than their distribution column (inner joins; outer and complex ones get
/// "complex joins are only supported when all distributed tables are
/// co-located and joined on their distribution columns").
pub const NON_COLOCATED_ERROR: &str = "the query contains a join that requires repartitioning";
const FK_ERROR: &str = "cannot create foreign key constraint\nDETAIL: Foreign keys are supported in two cases, either in between two colocated tables including partition column in the same ordinal in the both tables or from distributed to reference tables";

macro_rules! rules {
    ($($variant:ident = $name:literal,)*) => {
        /// Every finding's rule, by its stable id (`fk-without-tenant`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RuleId {
            $($variant,)*
        }

        impl RuleId {
            /// Every rule, in documentation order.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];

            /// The stable id.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(RuleId::$variant => $name,)*
                }
            }
        }
    };
}

rules! {
    PrimaryKeyWithoutTenant = "primary-key-without-tenant",
    UniqueWithoutTenant = "unique-without-tenant",
    UniqueIndexWithoutTenant = "unique-index-without-tenant",
    UniqueBecomesPerTenant = "unique-becomes-per-tenant",
    ExclusionWithoutTenant = "exclusion-without-tenant",
    ViewReliesOnKey = "view-relies-on-key",
    KeyDependent = "key-dependent",
    FkWithoutTenant = "fk-without-tenant",
    FkToLocal = "fk-to-local",
    FkToDistributedFromNonTenant = "fk-to-distributed-from-non-tenant",
    FkActionOnDelete = "fk-action-on-delete",
    FkActionOnUpdate = "fk-action-on-update",
    FkNotValidated = "fk-not-validated",
    TenantFkToRoot = "tenant-fk-to-root",
    TenantTypeNotHashable = "tenant-type-not-hashable",
    TenantGenerated = "tenant-generated",
    TenantTypeMismatch = "tenant-type-mismatch",
    TenantCollationMismatch = "tenant-collation-mismatch",
    TenantNullable = "tenant-nullable",
    UserTrigger = "user-trigger",
    MultiLevelPartitioning = "multi-level-partitioning",
    PartitionedTable = "partitioned-table",
    ForeignTable = "foreign-table",
    IntSerial = "int-serial",
    NoPrimaryKey = "no-primary-key",
    NullTenant = "null-tenant",
    OrphanRows = "orphan-rows",
    CrossTenantRows = "cross-tenant-rows",
    DataCheckIncomplete = "data-check-incomplete",
    PolymorphicPath = "polymorphic-path",
    InsertWithoutTenant = "insert-without-tenant",
    QueryWithoutTenantFilter = "query-without-tenant-filter",
    NonColocatedJoin = "non-colocated-join",
    FunctionOnShard = "function-on-shard",
    QueryAuditSkipped = "query-audit-skipped",
    LookupLosesIndex = "lookup-loses-index",
    HotTenant = "hot-tenant",
    ShardCount = "shard-count",
    SkewIncomplete = "skew-incomplete",
}

impl RuleId {
    /// The rule's page.
    pub fn doc(self) -> RuleDoc {
        use Family::*;
        use RuleId::*;
        let (family, why, citus, fix) = match self {
            PrimaryKeyWithoutTenant => (
                Keys,
                "A distributed table's primary key must contain the distribution column: each shard can only enforce uniqueness of what it holds.",
                Some(KEY_ERROR),
                "Automatic: a unique index on (tenant, key columns) is built concurrently, then the key is swapped to it with `ADD CONSTRAINT … PRIMARY KEY USING INDEX` under a brief lock.",
            ),
            UniqueWithoutTenant => (
                Keys,
                "Same as for primary keys: a UNIQUE constraint of a distributed table must contain the distribution column.",
                Some(KEY_ERROR),
                "Automatic: a unique index on (tenant, columns) built concurrently, then the constraint swapped to it.",
            ),
            UniqueIndexWithoutTenant => (
                Keys,
                "A unique index that backs no constraint must contain the distribution column too.",
                Some(KEY_ERROR),
                "Automatic for column and expression indexes: rebuilt concurrently with the tenant column first (expressions and WHERE kept), the old one dropped concurrently and the new one renamed.",
            ),
            UniqueBecomesPerTenant => (
                Keys,
                "Rewritten with the tenant column in front, a unique rule on the application's own values (one store per manager, one account per e-mail) holds per tenant only: two tenants may then share a value. Keys made of generated ids stay globally unique through their sequence.",
                None,
                "By you: check that the application does not rely on the rule across tenants; if it does, enforce it in the application (shards can only enforce uniqueness within a tenant).",
            ),
            ExclusionWithoutTenant => (
                Keys,
                "An EXCLUDE constraint must include the distribution column with an equality operator.",
                Some(KEY_ERROR),
                "By you: add `tenant WITH =` to the constraint (with btree_gist for GiST), or drop it.",
            ),
            FkWithoutTenant => (
                ForeignKeys,
                "A foreign key between two distributed tables must include the distribution column at the same position on both sides, so that the referenced row lives in the same shard group.",
                Some(FK_ERROR),
                "Automatic: the composite key (tenant, columns) → (tenant, key) is added NOT VALID, validated in its own transaction (writes continue), then the old one is dropped and the new one takes its name.",
            ),
            FkToLocal => (
                ForeignKeys,
                "A distributed table cannot reference a table that stays local on the coordinator.",
                Some(FK_ERROR),
                "By you: make the referenced table a reference table (`--reference T`) or a tenant table, or drop the key.",
            ),
            FkToDistributedFromNonTenant => (
                ForeignKeys,
                "A reference or local table cannot reference a distributed table: its rows would point into every shard.",
                Some("cannot create foreign key constraint since relations are not colocated or not referencing a reference table"),
                "By you: drop the key, or make the referencing table a tenant table.",
            ),
            FkActionOnDelete => (
                ForeignKeys,
                "With the distribution column in the key, ON DELETE SET NULL / SET DEFAULT would change the distribution column of the referencing row.",
                Some("cannot create foreign key constraint\nDETAIL: SET NULL or SET DEFAULT is not supported in ON DELETE operation when distribution key is included in the foreign key constraint"),
                "With consent: `--fix-fk-actions` makes the rewritten key NO ACTION (deleting a referenced row then fails while rows reference it; Citus refuses SET NULL even with a column list). Or by you: CASCADE, RESTRICT or NO ACTION.",
            ),
            FkActionOnUpdate => (
                ForeignKeys,
                "ON UPDATE SET NULL / SET DEFAULT / CASCADE would rewrite the distribution column of referencing rows.",
                Some("cannot create foreign key constraint\nDETAIL: SET NULL, SET DEFAULT or CASCADE is not supported in ON UPDATE operation when distribution key included in the foreign constraint."),
                "With consent: `--fix-fk-actions` makes the rewritten key NO ACTION on update (changing a referenced key then fails while rows reference it; tenant ids and keys rarely change). Or by you: RESTRICT or NO ACTION.",
            ),
            FkNotValidated => (
                ForeignKeys,
                "A NOT VALID foreign key is enforced for new rows only; old rows may violate it, and distributing copies them as they are.",
                None,
                "By you: `ALTER TABLE … VALIDATE CONSTRAINT …` (writes continue), after fixing the rows it names.",
            ),
            TenantFkToRoot => (
                ForeignKeys,
                "The tenant column does not reference the tenant root: nothing stops a row from naming a tenant that does not exist.",
                None,
                "Automatic: `FOREIGN KEY (tenant) REFERENCES root (key)` added NOT VALID, then validated.",
            ),
            TenantTypeNotHashable => (
                Column,
                "The distribution column needs a type with a hash operator class (not json, xml, money, point, …).",
                Some("could not identify a hash function for type json"),
                "By you: use another column, or convert the column to a hashable type.",
            ),
            TenantGenerated => (
                Column,
                "The distribution column cannot be GENERATED … STORED.",
                Some("cannot distribute relation: orders\nDETAIL: Distribution column must not use GENERATED ALWAYS AS (...) STORED."),
                "By you: make it a plain column (filled by the application or a default).",
            ),
            TenantTypeMismatch => (
                Column,
                "Colocated tables need the same type for their distribution column.",
                Some("cannot colocate tables stores and orders\nDETAIL: Distribution column types don't match for stores and orders."),
                "By you: `ALTER COLUMN … TYPE` to the root key's type (a rewrite: plan it).",
            ),
            TenantCollationMismatch => (
                Column,
                "Colocated text distribution columns need the same collation.",
                Some("cannot colocate tables\nDETAIL: Distribution column collations don't match"),
                "By you: align the collations.",
            ),
            TenantNullable => (
                Column,
                "Citus refuses NULL in the distribution column of the rows it routes.",
                Some("the partition column of table orders cannot be NULL"),
                "Automatic: `SET NOT NULL` through a CHECK added NOT VALID and validated (no long lock).",
            ),
            UserTrigger => (
                Triggers,
                "Citus refuses to distribute a table, reference tables included, that has user triggers.",
                Some("cannot distribute relation \"orders\" because it has triggers\nHINT: Consider dropping all the triggers on \"orders\" and retry."),
                "A trigger that only changes the row being written (a BEFORE row trigger whose PL/pgSQL reads no table, e.g. one stamping `last_update`; `tsvector_update_trigger`) is kept with `--keep-triggers`: `distribute` turns on `citus.enable_unsafe_triggers` for its session. Others by you (shardready's own sync trigger is removed by apply): drop the trigger or move its logic into the application.",
            ),
            MultiLevelPartitioning => (
                Partitioning,
                "Citus distributes a partitioned table through its parent and refuses partitions that are partitioned themselves.",
                Some("distributing multi-level partitioned tables is not supported"),
                "By you: flatten the partitioning to one level.",
            ),
            PartitionedTable => (
                Partitioning,
                "A partitioned table is distributed through its parent; its partitions follow.",
                None,
                "Nothing to do (information).",
            ),
            ForeignTable => (
                Partitioning,
                "A foreign table cannot be distributed.",
                Some("foreign tables cannot be distributed"),
                "By you: keep it local, or replace it with a table.",
            ),
            IntSerial => (
                Sequences,
                "int/smallint sequences cannot hand out values on the workers (Citus gives each worker a range of a bigint sequence), and int keys run out sooner across many tenants.",
                Some("nextval(sequence) calls in worker nodes are not supported for column defaults of type int or smallint"),
                "By you: `ALTER COLUMN … TYPE bigint` (and the sequence `AS bigint`), planned as a rewrite.",
            ),
            NoPrimaryKey => (
                NoKey,
                "Without a primary key the backfill has no key to walk in batches, and `create_distributed_table_concurrently` needs a replica identity.",
                Some("create_distributed_table_concurrently: relation has no replica identity"),
                "By you: add a primary key (or `REPLICA IDENTITY FULL`).",
            ),
            NullTenant => (
                Data,
                "Rows whose tenant column is NULL cannot be routed to a shard.",
                Some("the partition column of table orders cannot be NULL"),
                "Automatic where a foreign key gives the rows a tenant: `apply` fills them online, batched and governed like every backfill. Otherwise by you: fill or delete the rows the finding names.",
            ),
            OrphanRows => (
                Data,
                "Rows that no path gives a tenant (the key is NULL, or the parent is missing): the tenant column cannot be derived for them, and the composite key would reject them.",
                None,
                "Automatic where another nullable key gives them one (a payment that belongs to an invoice or to a payment request): `apply` takes each row's tenant through whichever key is set, checked to agree where several are. Otherwise by you: delete the orphans or restore their parents, or name the keys to take it through with `--path TABLE=FK1,FK2`.",
            ),
            CrossTenantRows => (
                Data,
                "Rows that reference a row of another tenant: the composite foreign key (tenant, id) cannot hold for them.",
                None,
                "By you: decide whether the relationship is really per tenant; if not, make the referenced table a reference table or keep the key single-column.",
            ),
            PolymorphicPath => (
                Polymorphic,
                "A `*_type`/`*_id` pair without a foreign key (Rails' polymorphic associations) points each row at a row of the table its type names: the only way its rows reach a tenant.",
                None,
                "By you: accept the `--path TABLE=ID_COLUMN:Type=table,…` it offers (each type from its table, checked like a foreign key; the types are read from the table), or name the tables where the types do not follow the naming convention.",
            ),
            DataCheckIncomplete => (
                Data,
                "A data check could not finish (a timeout, a permission): its absence of findings proves nothing.",
                None,
                "Rerun `shardready analyze --full` when the database is quieter, or with more privileges.",
            ),
            InsertWithoutTenant => (
                Queries,
                "An INSERT (in a function or in pg_stat_statements) that does not write the tenant column: once the sync trigger is gone it would fail.",
                None,
                "By you: write the tenant column in the application (like the seed's new create_orders).",
            ),
            QueryWithoutTenantFilter => (
                Queries,
                "A query on a distributed table without a tenant filter fans out to every shard.",
                None,
                "By you: add `tenant = $1` to the query where it belongs to one tenant.",
            ),
            NonColocatedJoin => (
                Queries,
                "A query (function, view, statement) that joins distributed tables on other columns than the tenant column, without pinning each to one tenant, fails once they are distributed. `apply` goes ahead (the application keeps working until `distribute`); `verify` and `distribute` refuse until it is resolved.",
                Some(NON_COLOCATED_ERROR),
                "By you: join the tables on the tenant column too, or filter each on one tenant; or run it with `citus.enable_repartition_joins` on (inner joins only, slower); or accept that it fails: `--accept-failing-queries`.",
            ),
            FunctionOnShard => (
                Queries,
                "A statement on a distributed table that calls a function which itself queries distributed tables runs that function on a shard, where Citus refuses the query inside. `apply` goes ahead; `verify` and `distribute` refuse until it is resolved.",
                Some("cannot execute a distributed query from a query on a shard"),
                "By you: compute the function's result in the statement itself (a join or a subquery), or call it outside statements on distributed tables; or accept that it fails: `--accept-failing-queries`.",
            ),
            QueryAuditSkipped => (
                Queries,
                "Some functions or statements could not be parsed or read; the query audit did not see them.",
                None,
                "Review them by hand.",
            ),
            ViewReliesOnKey => (
                Dependents,
                "A view that groups by a table's primary key and selects the table's other columns relies on that key (PostgreSQL's functional dependency): the key cannot be dropped while the view stands (`cannot drop constraint … because other objects depend on it`), and the same query is refused once the key also holds the tenant column.",
                None,
                "Automatic for a view: the key's swap re-creates it in the same transaction with the tenant column added to that GROUP BY (the same groups, now relying on the new key); nobody sees it in between. A materialized view (re-creating it fills it again) or a view whose GROUP BY cannot be found is refused before any change, with the statement to run.",
            ),
            KeyDependent => (
                Dependents,
                "Something other than a view depends on a key the plan replaces (a function with a SQL-standard body, a rule): dropping the old key in the swap would fail on it.",
                None,
                "By you: drop it or change it so that it no longer relies on the key, run apply, then re-create it.",
            ),
            LookupLosesIndex => (
                LostLookups,
                "With `--refuse-lost-lookups`: a known statement of the application (pg_stat_statements, a function, `--queries`) looks a table up by the first column of a key that the plan rebuilds with the tenant column, without the tenant column. With the tenant first in the new key it would lose its index and read the whole table; `plan` and `apply` stop before any change.",
                None,
                "By you: add the tenant filter each statement is named with (`orders.store_id = $2`), deploy, and run again; or choose the key's order for the table: `--key-order TABLE=key-first` (the old key stays first, the statements keep using it) or `--key-order TABLE=tenant-first` (apply builds an index on the old key before the swap). Without `--refuse-lost-lookups` the plan keeps the old key first by itself.",
            ),
            HotTenant => (
                Skew,
                "One tenant holds much more data than the others: its shard will be large.",
                None,
                "Consider `distribute --isolate-hot-tenants` (isolate_tenant_to_new_shard).",
            ),
            ShardCount => (
                Skew,
                "The shard count suggested for the data's size and tenant count.",
                None,
                "Pass it to `shardready distribute --shard-count N`.",
            ),
            SkewIncomplete => (
                Skew,
                "The skew estimate could not read every table.",
                None,
                "Rerun with more privileges or `--full`.",
            ),
        };
        RuleDoc {
            family,
            why,
            citus,
            fix,
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for RuleId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RuleId::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "no rule `{s}`; the rules are: {}",
                    RuleId::ALL
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One rule's page as Markdown (a section of docs/rules.md; `explain`).
pub fn rule_markdown(r: RuleId) -> String {
    let d = r.doc();
    let mut out = format!("## `{r}`\n\n{}\n\n", d.why);
    if let Some(c) = d.citus {
        out.push_str(&format!("Citus says:\n\n```text\nERROR:  {c}\n```\n\n"));
    }
    out.push_str(&format!(
        "Fix: {}\n\nChecked in `{}`.\n",
        d.fix,
        d.family.source()
    ));
    out
}

/// docs/rules.md: every rule's page.
pub fn rules_markdown() -> String {
    let mut out = String::from(
        "# The rules\n\nEvery finding `shardready analyze` reports names one of these rules. \
         `shardready explain RULE` prints a rule's page. This file is generated from \
         `src/analyze/rules/id.rs` (`SHARDREADY_BLESS=1 cargo test --lib rules_doc` rewrites it).\n\n",
    );
    for r in RuleId::ALL {
        out.push_str(&rule_markdown(*r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for r in RuleId::ALL {
            assert_eq!(r.as_str().parse::<RuleId>().unwrap(), *r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert!("nope"
            .parse::<RuleId>()
            .unwrap_err()
            .contains("fk-without-tenant"));
    }

    #[test]
    fn rules_doc_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rules.md");
        let want = rules_markdown();
        if std::env::var_os("SHARDREADY_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/rules.md is stale: run `SHARDREADY_BLESS=1 cargo test --lib rules_doc`"
        );
    }
}
