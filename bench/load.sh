#!/usr/bin/env bash
# Load benchmark: the seed's `psql \copy` procedure vs `shardready tailspin load`,
# on one fresh sandbox, each into a fresh copy of the seed's schema, same CSV files.
#
#   bash bench/load.sh            # full scale (6M rows)
#   SCALE=0.1 bash bench/load.sh  # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-1}
BENCH_NAME=load
source bench/lib.sh
BASE=${URL%/*}

echo "generating the CSV files (scale $SCALE)..." >&2
"$BIN" tailspin generate --out "$WORK/data" --scale "$SCALE" >&2
du -sh "$WORK/data" >&2

for db in bench_psql bench_shardready; do
  "$PSQL" -X -q "$URL" -c "CREATE DATABASE $db"
  "$BIN" tailspin schema --db "$BASE/$db" 2>/dev/null
done
"$PSQL" -X -q "$URL" -c "CHECKPOINT"

now() { date +%s.%N; }

echo "loading with psql \\copy, exactly as the seed does..." >&2
t0=$(now)
( cd "$WORK/data" && "$PSQL" -X -q -v ON_ERROR_STOP=1 "$BASE/bench_psql" <<'SQL'
SET CLIENT_ENCODING TO 'utf8';
BEGIN;
\COPY stores FROM stores.csv WITH CSV HEADER;
SELECT setval('stores_store_id_seq', MAX(store_id)) FROM stores;
COMMIT;
BEGIN;
\COPY products FROM products.csv WITH CSV;
SELECT setval('products_product_id_seq', MAX(product_id)) FROM products;
COMMIT;
BEGIN;
\COPY orders FROM PROGRAM 'cat orders*.csv' WITH CSV;
SELECT setval('orders_order_id_seq', MAX(order_id)) FROM orders;
COMMIT;
BEGIN;
\COPY line_items FROM PROGRAM 'cat line_items*.csv' WITH CSV;
SELECT setval('line_items_line_item_id_seq', MAX(line_item_id)) FROM line_items;
COMMIT;
SQL
) >/dev/null
t1=$(now)
"$PSQL" -X -q "$URL" -c "CHECKPOINT"

echo "loading with shardready tailspin load --from (same files)..." >&2
t2=$(now)
"$BIN" tailspin load --from "$WORK/data" --db "$BASE/bench_shardready" >/dev/null
t3=$(now)

for db in bench_psql bench_shardready; do
  "$PSQL" -X -q -At "$BASE/$db" -c "SELECT '$db: ' || string_agg(t || '=' || n, ' ') FROM (
    SELECT 'stores' t, count(*) n FROM stores UNION ALL SELECT 'products', count(*) FROM products
    UNION ALL SELECT 'orders', count(*) FROM orders UNION ALL SELECT 'line_items', count(*) FROM line_items) c" >&2
done

echo "raw: psql_start=$t0 psql_end=$t1 ours_start=$t2 ours_end=$t3" >&2
python3 - "$t0" "$t1" "$t2" "$t3" "$SCALE" <<'PY'
import sys
t0, t1, t2, t3, scale = map(float, sys.argv[1:])
psql, ours = t1 - t0, t3 - t2
rows = [
    ("psql \\copy (the seed's procedure)", f"{psql:8.1f} s"),
    ("shardready tailspin load --from", f"{ours:8.1f} s"),
    ("ratio (shardready / psql)", f"{ours / psql:8.2f}   (target <= 0.33)"),
]
print(f"load benchmark, scale {scale:g}, one sandbox, same CSV files")
for label, value in rows:
    print(f"  {label:<36} {value}")
PY
