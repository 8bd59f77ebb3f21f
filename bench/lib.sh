# Shared by the bench scripts: builds the release binary, starts a sandbox
# of its own in a temporary directory (removed on exit), and sets BIN, WORK,
# SB, URL and PSQL. Source it after cd-ing to the repository root.
BIN=target/release/shardready
cargo build --release --quiet
WORK=$(mktemp -d "/tmp/shardready-bench-${BENCH_NAME:-run}.XXXXXX")
chmod 755 "$WORK"
SB="$WORK/sandbox"
cleanup() { "$BIN" sandbox destroy --dir "$SB" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" sandbox start --dir "$SB" >/dev/null
URL=$("$BIN" sandbox url --dir "$SB")
PSQL="$(pg_config --bindir)/psql"
[ -x "$PSQL" ] || PSQL=psql
