//! Hand-built catalogs for the unit tests of tenant inference, the rules
//! and the data/query/skew planners: a small builder over
//! [`crate::catalog::Table`], and the Tailspin schema as the catalog reads
//! it.

use crate::analyze::rules::Ctx;
use crate::analyze::{tenant, Overrides};
use crate::catalog::{
    Catalog, Column, FkAction, ForeignKey, Function, Index, KeyConstraint, KeyKind, QName, Table,
    TableKind, Trigger,
};

/// Types Citus cannot hash (what `Column::hashable` is false for).
const UNHASHABLE: &[&str] = &["json", "xml", "money", "point"];

/// A table under construction (schema `public` unless the name says
/// `schema.name`; 1000 estimated rows).
pub struct TB(pub Table);

pub fn table(name: &str) -> TB {
    TB(Table {
        oid: 0,
        name: tenant::parse_table(name),
        kind: TableKind::Regular,
        parent: None,
        partition_key: None,
        row_estimate: 1000,
        size_bytes: 1000 * 100,
        heap_bytes: 1000 * 80,
        index_bytes: 1000 * 20,
        columns: Vec::new(),
        keys: Vec::new(),
        unique_indexes: Vec::new(),
        invalid_indexes: Vec::new(),
        index_leads: Vec::new(),
        foreign_keys: Vec::new(),
        checks: Vec::new(),
        triggers: Vec::new(),
        rls_enabled: false,
        policies: Vec::new(),
        replica_identity: "d".into(),
        autovacuum_enabled: None,
    })
}

impl TB {
    fn column(mut self, name: &str, ty: &str, not_null: bool) -> Self {
        let attnum = self.0.columns.len() as i16 + 1;
        self.0.columns.push(Column {
            name: name.into(),
            attnum,
            type_name: ty.into(),
            type_oid: 0,
            collation: None,
            not_null,
            default: None,
            identity: None,
            generated: None,
            hashable: !UNHASHABLE.contains(&ty),
        });
        self
    }
    pub fn col(self, name: &str, ty: &str) -> Self {
        self.column(name, ty, false)
    }
    pub fn col_notnull(self, name: &str, ty: &str) -> Self {
        self.column(name, ty, true)
    }
    /// A `serial`-style column: `nextval(...)` default.
    pub fn serial(self, name: &str, ty: &str) -> Self {
        let seq = format!("nextval('{}_{name}_seq'::regclass)", self.0.name.name);
        let mut s = self.column(name, ty, true);
        s.0.columns.last_mut().unwrap().default = Some(seq);
        s
    }
    /// Changes the last column.
    pub fn with(mut self, f: impl FnOnce(&mut Column)) -> Self {
        f(self.0.columns.last_mut().expect("a column"));
        self
    }
    fn key(mut self, kind: KeyKind, name: &str, cols: &[&str]) -> Self {
        if kind == KeyKind::Primary {
            for c in cols {
                if let Some(col) = self.0.columns.iter_mut().find(|x| x.name == *c) {
                    col.not_null = true;
                }
            }
        }
        self.0.keys.push(KeyConstraint {
            name: name.into(),
            kind,
            columns: cols.iter().map(|c| c.to_string()).collect(),
            index: name.into(),
            deferrable: false,
            definition: String::new(),
            dependents: Vec::new(),
        });
        if kind != KeyKind::Exclusion {
            self.0.unique_indexes.push(Index {
                name: name.into(),
                primary: kind == KeyKind::Primary,
                valid: true,
                columns: cols.iter().map(|c| Some(c.to_string())).collect(),
                predicate: None,
                definition: String::new(),
                constraint: Some(name.into()),
            });
        }
        self
    }
    pub fn pk(self, cols: &[&str]) -> Self {
        let name = format!("{}_pkey", self.0.name.name);
        self.key(KeyKind::Primary, &name, cols)
    }
    pub fn unique(self, name: &str, cols: &[&str]) -> Self {
        self.key(KeyKind::Unique, name, cols)
    }
    pub fn exclusion(self, name: &str, cols: &[&str]) -> Self {
        self.key(KeyKind::Exclusion, name, cols)
    }
    /// A unique index without a constraint; `None` columns are expressions.
    pub fn unique_index_expr(mut self, name: &str, cols: &[Option<&str>]) -> Self {
        self.0.unique_indexes.push(Index {
            name: name.into(),
            primary: false,
            valid: true,
            columns: cols.iter().map(|c| c.map(String::from)).collect(),
            predicate: None,
            definition: String::new(),
            constraint: None,
        });
        self
    }
    pub fn unique_index(self, name: &str, cols: &[&str]) -> Self {
        let cols: Vec<Option<&str>> = cols.iter().map(|c| Some(*c)).collect();
        self.unique_index_expr(name, &cols)
    }
    pub fn fk(self, name: &str, cols: &[&str], to: &str, ref_cols: &[&str]) -> Self {
        self.fk_with(name, cols, to, ref_cols, |_| {})
    }
    pub fn fk_with(
        mut self,
        name: &str,
        cols: &[&str],
        to: &str,
        ref_cols: &[&str],
        f: impl FnOnce(&mut ForeignKey),
    ) -> Self {
        let mut fk = ForeignKey {
            name: name.into(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            ref_table: tenant::parse_table(to),
            ref_columns: ref_cols.iter().map(|c| c.to_string()).collect(),
            on_delete: FkAction::NoAction,
            on_update: FkAction::NoAction,
            validated: true,
            deferrable: false,
            definition: String::new(),
        };
        f(&mut fk);
        self.0.foreign_keys.push(fk);
        self
    }
    pub fn trigger(mut self, name: &str, function: &str) -> Self {
        self.0.triggers.push(Trigger {
            name: name.into(),
            function: function.into(),
            enabled: true,
            definition: String::new(),
            language: "plpgsql".into(),
            source: "BEGIN INSERT INTO audit VALUES (NEW.id); RETURN NEW; END".into(),
            before_row: false,
            on_update: true,
        });
        self
    }
    /// A BEFORE UPDATE row trigger that only sets a column of the row
    /// (Pagila's `last_updated`).
    pub fn row_trigger(mut self, name: &str, function: &str) -> Self {
        self.0.triggers.push(Trigger {
            name: name.into(),
            function: function.into(),
            enabled: true,
            definition: String::new(),
            language: "plpgsql".into(),
            source: "\nBEGIN\n    NEW.last_update = CURRENT_TIMESTAMP; -- keep it\n    RETURN NEW;\nEND ".into(),
            before_row: true,
            on_update: true,
        });
        self
    }
    pub fn rows(mut self, n: i64) -> Self {
        self.0.row_estimate = n;
        self.0.size_bytes = n * 100;
        self
    }
    pub fn partitioned(mut self, key: &str) -> Self {
        self.0.kind = TableKind::Partitioned;
        self.0.partition_key = Some(key.into());
        self.0.row_estimate = 0;
        self.0.size_bytes = 0;
        self
    }
    /// A partition of `parent` (itself partitioned when `sub` is given).
    pub fn partition_of(mut self, parent: &str) -> Self {
        self.0.kind = TableKind::Partition;
        self.0.parent = Some(tenant::parse_table(parent));
        self
    }
    pub fn foreign(mut self) -> Self {
        self.0.kind = TableKind::Foreign;
        self
    }
    pub fn build(self) -> Table {
        self.0
    }
}

pub fn catalog(tables: Vec<TB>) -> Catalog {
    Catalog {
        server_version_num: 150000,
        database: "test".into(),
        tables: tables.into_iter().map(|t| t.0).collect(),
        sequences: Vec::new(),
        functions: Vec::new(),
        views: Vec::new(),
        key_views: Vec::new(),
        extensions: Vec::new(),
        placed: Vec::new(),
    }
}

/// A plpgsql or SQL function for the query audit.
pub fn function(name: &str, language: &str, arguments: &str, body: &str) -> Function {
    Function {
        schema: "public".into(),
        name: name.into(),
        language: language.into(),
        arguments: arguments.into(),
        body: body.into(),
        definition: String::new(),
    }
}

/// The seed's four tables, as the catalog reads them (seed-scale row
/// estimates).
pub fn tailspin() -> Catalog {
    catalog(vec![
        table("stores")
            .serial("store_id", "bigint")
            .col("name", "text")
            .col("category", "text")
            .pk(&["store_id"])
            .rows(442),
        table("products")
            .serial("product_id", "bigint")
            .col("store_id", "bigint")
            .col("name", "text")
            .col("description", "text")
            .col("price", "numeric")
            .pk(&["product_id"])
            .fk(
                "products_store_id_fkey",
                &["store_id"],
                "stores",
                &["store_id"],
            )
            .rows(10_002),
        table("orders")
            .serial("order_id", "bigint")
            .col("store_id", "bigint")
            .col("status", "text")
            .col("billing_address", "text")
            .col("shipping_address", "text")
            .col("ordered_at", "timestamp without time zone")
            .pk(&["order_id"])
            .fk(
                "orders_store_id_fkey",
                &["store_id"],
                "stores",
                &["store_id"],
            )
            .rows(1_999_680),
        table("line_items")
            .serial("line_item_id", "bigint")
            .col("product_id", "bigint")
            .col("order_id", "bigint")
            .col("quantity", "bigint")
            .col("line_amount", "numeric")
            .pk(&["line_item_id"])
            .fk(
                "line_items_product_id_fkey",
                &["product_id"],
                "products",
                &["product_id"],
            )
            .fk(
                "line_items_order_id_fkey",
                &["order_id"],
                "orders",
                &["order_id"],
            )
            .rows(4_002_959),
    ])
}

/// Stores, orders and items, each with the tenant column; items → orders
/// already composite, with `fk` applied to that key.
pub fn shop(fk: impl FnOnce(&mut crate::catalog::ForeignKey)) -> Catalog {
    catalog(vec![
        table("stores").col("store_id", "bigint").pk(&["store_id"]),
        table("orders")
            .col("store_id", "bigint")
            .col("id", "bigint")
            .pk(&["store_id", "id"])
            .fk("o_s", &["store_id"], "stores", &["store_id"]),
        table("items")
            .col("store_id", "bigint")
            .col("id", "bigint")
            .col("order_id", "bigint")
            .pk(&["store_id", "id"])
            .fk("i_s", &["store_id"], "stores", &["store_id"])
            .fk_with(
                "i_o",
                &["store_id", "order_id"],
                "orders",
                &["store_id", "id"],
                fk,
            ),
    ])
}

/// Infers and classifies `cat` and hands the rule context to `f`.
pub fn with_ctx<R>(cat: &Catalog, o: &Overrides, f: impl FnOnce(&Ctx) -> R) -> R {
    let t = tenant::infer(cat, o).expect("a tenant column");
    let classes = tenant::classify(cat, &t, o);
    let ctx = Ctx {
        cat,
        tenant: &t,
        classes: &classes,
        overrides: o,
        reading_functions: Default::default(),
    };
    f(&ctx)
}

pub fn q(name: &str) -> QName {
    tenant::parse_table(name)
}

/// (rule, table, object) of each finding, for compact assertions.
pub fn summary(
    f: &[crate::analyze::Finding],
) -> Vec<(crate::analyze::RuleId, String, Option<String>)> {
    f.iter()
        .map(|f| {
            (
                f.rule,
                f.table.as_ref().map(|t| t.to_string()).unwrap_or_default(),
                f.object.clone(),
            )
        })
        .collect()
}

/// Runs one rule family on `cat`.
pub fn run_rule(
    cat: &Catalog,
    o: &Overrides,
    check: fn(&Ctx) -> Vec<crate::analyze::Finding>,
) -> Vec<crate::analyze::Finding> {
    with_ctx(cat, o, check)
}

pub fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}
