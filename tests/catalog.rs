//! The catalog reader against a real server, on a schema with every feature
//! it must see.

mod common;

use shardready::catalog::{Catalog, FkAction, KeyKind, QName, TableKind};

const SCHEMA: &str = r#"
CREATE SCHEMA "Sales Dept";
CREATE TABLE stores (store_id bigserial PRIMARY KEY, name text UNIQUE, category text);
CREATE TABLE "Sales Dept"."Order Items" (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id bigint NOT NULL REFERENCES stores (store_id) ON DELETE CASCADE,
    code text COLLATE "C",
    price numeric DEFAULT 0,
    total numeric GENERATED ALWAYS AS (price * 2) STORED,
    doc json,
    EXCLUDE USING btree (code WITH =)
);
CREATE UNIQUE INDEX items_code_lower ON "Sales Dept"."Order Items" (lower(code)) WHERE price > 0;
CREATE TABLE events (store_id bigint, at timestamptz, payload text) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey ADD CONSTRAINT nokey_a_check CHECK (a > 0) NOT VALID;
CREATE TABLE refs (id bigint PRIMARY KEY, store_id bigint);
ALTER TABLE refs ADD FOREIGN KEY (store_id) REFERENCES stores (store_id) ON UPDATE SET NULL NOT VALID;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER refs_touch BEFORE INSERT ON refs FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE refs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON refs USING (store_id = 1);
CREATE FUNCTION count_refs() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM refs $$;
"#;

#[tokio::test]
async fn reads_every_feature_of_a_schema() {
    let (_c, t) = common::cluster();
    let client = common::connect(&t).await;
    client.batch_execute(SCHEMA).await.unwrap();
    let cat = Catalog::read(&client).await.unwrap();

    let names: Vec<String> = cat.tables.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "Sales Dept.Order Items",
            "events",
            "events_2024",
            "nokey",
            "refs",
            "stores"
        ],
        "all user schemas, nothing of pg_cron's"
    );
    let stores = cat.table(&QName::new("public", "stores")).unwrap();
    assert_eq!(stores.kind, TableKind::Regular);
    let pk = stores.primary_key().unwrap();
    assert_eq!(pk.columns, ["store_id"]);
    assert_eq!(pk.index, "stores_pkey");
    assert!(stores
        .keys
        .iter()
        .any(|k| k.kind == KeyKind::Unique && k.columns == ["name"]));
    assert_eq!(stores.column("store_id").unwrap().type_name, "bigint");
    assert!(stores.column("store_id").unwrap().hashable);
    assert!(stores
        .column("store_id")
        .unwrap()
        .default
        .as_deref()
        .unwrap()
        .contains("nextval"));

    let items = cat.table(&QName::new("Sales Dept", "Order Items")).unwrap();
    let id = items.column("id").unwrap();
    assert_eq!(id.identity.as_deref(), Some("a"));
    assert_eq!(id.type_name, "integer");
    assert_eq!(
        items.column("total").unwrap().generated.as_deref(),
        Some("s")
    );
    assert_eq!(
        items.column("code").unwrap().collation.as_deref(),
        Some("\"C\"")
    );
    assert!(
        !items.column("doc").unwrap().hashable,
        "json has no hash opclass"
    );
    assert!(items.keys.iter().any(|k| k.kind == KeyKind::Exclusion));
    let expr = items
        .unique_indexes
        .iter()
        .find(|i| i.name == "items_code_lower")
        .unwrap();
    assert_eq!(expr.columns, [None]);
    assert!(expr.predicate.as_deref().unwrap().contains("price"));
    assert!(expr.constraint.is_none());
    let fk = &items.foreign_keys[0];
    assert_eq!(fk.ref_table, QName::new("public", "stores"));
    assert_eq!(fk.on_delete, FkAction::Cascade);
    assert!(fk.validated);

    let events = cat.table(&QName::new("public", "events")).unwrap();
    assert_eq!(events.kind, TableKind::Partitioned);
    assert!(events.partition_key.as_deref().unwrap().contains("RANGE"));
    let part = cat.table(&QName::new("public", "events_2024")).unwrap();
    assert_eq!(part.kind, TableKind::Partition);
    assert_eq!(part.parent.as_ref().unwrap().name, "events");

    let nokey = cat.table(&QName::new("public", "nokey")).unwrap();
    assert!(nokey.primary_key().is_none());
    assert_eq!(
        nokey.checks,
        [shardready::catalog::CheckConstraint {
            name: "nokey_a_check".to_string(),
            definition: "CHECK ((a > 0)) NOT VALID".to_string(),
            validated: false
        }]
    );

    let refs = cat.table(&QName::new("public", "refs")).unwrap();
    assert!(!refs.foreign_keys[0].validated);
    assert_eq!(refs.foreign_keys[0].on_update, FkAction::SetNull);
    assert_eq!(refs.triggers.len(), 1);
    assert_eq!(refs.triggers[0].function, "touch");
    assert!(refs.rls_enabled);
    assert_eq!(refs.policies[0].name, "tenant");

    let seq = cat
        .sequences
        .iter()
        .find(|s| s.name.name == "stores_store_id_seq")
        .unwrap();
    assert_eq!(seq.owned_by.as_ref().unwrap().column, "store_id");
    assert!(cat.sequences.iter().any(|s| s
        .owned_by
        .as_ref()
        .is_some_and(|o| o.table.name == "Order Items")));
    assert!(cat
        .functions
        .iter()
        .any(|f| f.name == "count_refs" && f.language == "sql"));
    assert!(cat
        .functions
        .iter()
        .any(|f| f.name == "touch" && f.language == "plpgsql"));
    assert!(cat.has_extension("pg_cron"));
}
