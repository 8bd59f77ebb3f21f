#!/usr/bin/env bash
# Workload benchmark: on one sandbox with full-scale Tailspin data,
#  - the highest order rate the client mode sustains (achieved >= 95% of target),
#  - the seed's timed `SELECT create_orders(20000)` (--mode server --once 20000),
# before and after the seed's key swap ((store_id, id) keys), side by side.
#
#   bash bench/workload.sh
#   SCALE=0.1 STEP_SECONDS=10 bash bench/workload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-1}
STEP=${STEP_SECONDS:-15}
CONNS=${CONNECTIONS:-4}
BENCH_NAME=wl
source bench/lib.sh
export DATABASE_URL="$URL"
"$BIN" tailspin schema >/dev/null 2>&1
"$BIN" tailspin load --scale "$SCALE" >&2
"$PSQL" -X -q "$URL" -c "VACUUM ANALYZE"

# Highest sustained rate: double until the driver falls behind, then bisect.
max_rate() {
  local lo=0 hi=0 r=25 achieved
  run() {
    "$BIN" workload --rate "$1/s" --duration "${STEP}s" --connections "$CONNS" --format json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["achieved_rate_per_min"]/60)'
  }
  while :; do
    achieved=$(run $r)
    echo "  rate $r/s -> $achieved/s" >&2
    if python3 -c "import sys; sys.exit(0 if $achieved >= 0.95*$r else 1)"; then lo=$r; r=$((r*2)); else hi=$r; break; fi
    [ $r -gt 20000 ] && break
  done
  [ $hi -eq 0 ] && { echo $lo; return; }
  for _ in 1 2 3; do
    r=$(( (lo + hi) / 2 ))
    achieved=$(run $r)
    echo "  rate $r/s -> $achieved/s" >&2
    if python3 -c "import sys; sys.exit(0 if $achieved >= 0.95*$r else 1)"; then lo=$r; else hi=$r; fi
  done
  echo $lo
}

once() {
  "$BIN" workload --mode server --once 20000 --format json \
    | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["seconds"],2))'
}

echo "before the key swap:" >&2
B_RATE=$(max_rate)
B_ONCE=$(once)

echo "the seed's key swap (add store_id, backfill, composite keys)..." >&2
"$PSQL" -X -q -v ON_ERROR_STOP=1 "$URL" <<'SQL'
ALTER TABLE line_items ADD COLUMN store_id bigint;
UPDATE line_items li SET store_id = o.store_id FROM orders o WHERE o.order_id = li.order_id;
CREATE UNIQUE INDEX CONCURRENTLY orders_tmp_idx ON orders (store_id, order_id);
CREATE UNIQUE INDEX CONCURRENTLY products_tmp_idx ON products (store_id, product_id);
CREATE UNIQUE INDEX CONCURRENTLY line_items_tmp_idx ON line_items (store_id, line_item_id);
BEGIN;
ALTER TABLE orders DROP CONSTRAINT orders_pkey CASCADE, ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_tmp_idx;
ALTER TABLE line_items ADD CONSTRAINT line_items_orders_fkey FOREIGN KEY (store_id, order_id) REFERENCES orders (store_id, order_id);
COMMIT;
BEGIN;
ALTER TABLE products DROP CONSTRAINT products_pkey CASCADE, ADD CONSTRAINT products_pkey PRIMARY KEY USING INDEX products_tmp_idx;
ALTER TABLE line_items ADD CONSTRAINT line_items_products_fkey FOREIGN KEY (store_id, product_id) REFERENCES products (store_id, product_id);
COMMIT;
BEGIN;
ALTER TABLE line_items DROP CONSTRAINT line_items_pkey, ADD CONSTRAINT line_items_pkey PRIMARY KEY USING INDEX line_items_tmp_idx;
ALTER TABLE line_items ADD CONSTRAINT line_items_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (store_id);
COMMIT;
VACUUM ANALYZE;
SQL

echo "after the key swap:" >&2
A_RATE=$(max_rate)
A_ONCE=$(once)

python3 - "$B_RATE" "$A_RATE" "$B_ONCE" "$A_ONCE" "$SCALE" "$CONNS" <<'PY'
import sys
br, ar, bo, ao, scale, conns = sys.argv[1:]
br, ar, bo, ao = int(br), int(ar), float(bo), float(ao)
print(f"workload benchmark, scale {scale}, {conns} connections, one sandbox")
print(f"  {'':<44} {'before':>10} {'after':>10} {'ratio':>8}")
print(f"  {'client mode, highest sustained rate (orders/s)':<44} {br:>10} {ar:>10} {ar/max(br,1):>7.1f}x")
print(f"  {'create_orders(20000), server mode --once (s)':<44} {bo:>10.2f} {ao:>10.2f} {bo/max(ao,1e-9):>7.1f}x")
PY
