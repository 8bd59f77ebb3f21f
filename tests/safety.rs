//! Never break the application: an application that writes cross-tenant
//! rows (a history table whose rows reference another tenant's document,
//! by design) keeps writing, error-free, while `apply` refuses before any
//! change, then completes with the resolution it printed; rows that start
//! to violate the new key only after the pre-flight stop `apply` before the
//! key is added, and no NOT VALID constraint is left to reject writes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cluster, connect, quiet, run_on, scalar_i64};
use shardready::apply::{self, ApplyError, ApplyOptions, Reject};
use shardready::conn::Target;

/// Apply, stopped after its first `steps` steps.
async fn apply_steps(t: &Target, opts: &ApplyOptions, steps: usize) -> apply::ApplyReport {
    apply::apply(
        t,
        &ApplyOptions {
            max_steps: Some(steps),
            ..opts.clone()
        },
        None,
    )
    .await
    .unwrap()
}

const SCHEMA: &str = "
CREATE TABLE accounts (account_id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE docs (
    doc_id bigint PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (account_id),
    title text NOT NULL);
CREATE TABLE doc_history (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (account_id),
    doc_id bigint NOT NULL REFERENCES docs (doc_id),
    at timestamptz NOT NULL DEFAULT now());
INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 3) g;
INSERT INTO docs SELECT g, 1 + g % 3, 'd' || g FROM generate_series(1, 30) g;
INSERT INTO doc_history (account_id, doc_id) SELECT 1 + d % 3, d FROM generate_series(1, 30) d, generate_series(1, 10);
";

/// The application: inserts a history row every few milliseconds until
/// stopped — every `cross`-th one (0: never) for a document of another
/// account — and counts what the database rejected.
struct App {
    stop: Arc<AtomicBool>,
    cross: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl App {
    async fn start(t: &Target, cross: u64) -> App {
        let c = connect(t).await;
        let stop = Arc::new(AtomicBool::new(false));
        let cross = Arc::new(AtomicU64::new(cross));
        let written = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, x, w, f) = (stop.clone(), cross.clone(), written.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i: i64 = 0;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                let doc = 1 + i % 30;
                let own = 1 + doc % 3;
                let every = x.load(Ordering::SeqCst) as i64;
                let account = if every > 0 && i % every == 0 {
                    1 + own % 3 // another account's document
                } else {
                    own
                };
                match c
                    .execute(
                        "INSERT INTO doc_history (account_id, doc_id) VALUES ($1, $2)",
                        &[&account, &doc],
                    )
                    .await
                {
                    Ok(_) => w.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        errors.push(shardready::conn::error_text(&e));
                        f.fetch_add(1, Ordering::SeqCst)
                    }
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        });
        App {
            stop,
            cross,
            written,
            failed,
            task,
        }
    }

    /// Stops it; the messages of its failed writes.
    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self.task.await.unwrap();
        (self.written.load(Ordering::SeqCst), errors)
    }
}

/// Every constraint of the public schema, as `table name definition`.
async fn constraints(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The ``shardready apply --drop-fk …`` command line a refusal printed, as
/// arguments.
fn printed_resolution(stderr: &str) -> Vec<String> {
    let start = stderr
        .find("`shardready apply --drop-fk ")
        .or_else(|| stderr.find("`shardready apply --replan --drop-fk "))
        .unwrap_or_else(|| panic!("no --drop-fk resolution printed:\n{stderr}"));
    let rest = &stderr[start + 1..];
    let line = &rest[..rest.find('`').unwrap()];
    line.split_whitespace().skip(1).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_tenant_writes_stop_apply_before_any_change_then_its_resolution_completes() {
    let (cl, t) = cluster();
    let c = connect(&t).await;
    shardready::db::exec_script(&c, SCHEMA).await.unwrap();
    let before = constraints(&c).await;
    // The application writes one row in four for another account's
    // document, as it always has.
    let app = App::start(&t, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tenant = ["--tenant-column", "account_id"];
    // plan says it cannot complete, and why.
    let out = run_on(&cl.url(), &[&["plan"][..], &tenant[..]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the plan cannot complete") && err.contains("cross-tenant-rows"),
        "{err}"
    );
    let out = run_on(&cl.url(), &[&["apply"][..], &tenant[..]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nothing was changed") && err.contains("cross-tenant-rows"),
        "{err}"
    );
    // Nothing changed: not a constraint, not even shardready's own state.
    assert_eq!(constraints(&c).await, before);
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'shardready'"
        )
        .await,
        0
    );
    // The resolution it printed (the flags given kept), under the same
    // traffic.
    let args = printed_resolution(&err);
    assert_eq!(
        args,
        [
            "apply",
            "--drop-fk",
            "doc_history.doc_history_doc_id_fkey",
            "--tenant-column",
            "account_id"
        ]
    );
    let out = run_on(&cl.url(), &args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (written, errors) = app.stop().await;
    assert!(written > 50, "the application kept writing ({written})");
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    // Prepared: the key that could not hold is gone (its definition was
    // printed), every other one has the tenant in front.
    let mut verify_args = vec!["verify".to_string()];
    verify_args.extend(args[1..].iter().cloned());
    let verify = run_on(&cl.url(), &verify_args);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violating_rows_after_the_preflight_never_meet_the_new_key() {
    let (cl, t) = cluster();
    let c = connect(&t).await;
    shardready::db::exec_script(&c, SCHEMA).await.unwrap();
    let mut opts = quiet();
    opts.analyze.overrides.tenant_column = Some("account_id".into());
    // The plan, run up to its first composite foreign key: the pre-flight
    // found nothing (the application writes only its own account's rows).
    let plan = run_on(
        &cl.url(),
        &["plan", "--format", "json", "--tenant-column", "account_id"],
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let first_fk = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["step"] == "foreign_key")
        .expect("a composite foreign key step");
    let app = App::start(&t, 0).await;
    let partial = apply_steps(&t, &opts, first_fk).await;
    assert!(!partial.finished);
    // Now the application starts writing cross-tenant rows.
    app.cross.store(5, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = apply::apply(&t, &opts, None).await.unwrap_err();
    match &err {
        ApplyError::WouldReject { when, keys, .. } => {
            assert_eq!(*when, Reject::Before, "{err}");
            assert!(!keys.is_empty(), "{err}");
        }
        other => panic!("expected a refusal before the key, got {other}"),
    }
    assert!(err.is_blocker());
    let text = err.to_string();
    assert!(
        text.contains("Nothing of the new constraint was added; the original key still holds")
            && text.contains("--drop-fk"),
        "{text}"
    );
    // The application goes on writing such rows: none is rejected, and no
    // NOT VALID constraint is left behind.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.failed.load(Ordering::SeqCst), 0);
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_constraint WHERE NOT convalidated AND contype = 'f'"
        )
        .await,
        0
    );
    // A rerun finds the same rows, stops the same way, and prints the
    // resolution; run as printed, it completes under the same traffic.
    let out = run_on(&cl.url(), &["apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let args = printed_resolution(&err);
    assert_eq!(
        args,
        [
            "apply",
            "--replan",
            "--drop-fk",
            "doc_history.doc_history_doc_id_fkey"
        ],
        "{err}"
    );
    let mut args = args;
    args.extend(["--tenant-column".into(), "account_id".into()]);
    let out = run_on(&cl.url(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (written, errors) = app.stop().await;
    assert!(written > 50, "{written}");
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    let kept = scalar_i64(
        &c,
        "SELECT count(*) FROM pg_constraint WHERE conname = 'doc_history_doc_id_fkey'",
    )
    .await;
    assert_eq!(kept, 0, "the key the user dropped is gone");
}

/// `apply --replan` over an unfinished plan never forgets what that plan
/// created: stopped before the backfill (the column still NULL) or after
/// the NOT NULL (the column filled), the new plan finishes, and no sync
/// trigger, function or counter of shardready's is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replanning_over_an_unfinished_plan_leaves_no_helper_behind() {
    for stop_after in [3, 5] {
        let (_cl, t) = common::tailspin(0.002).await;
        let c = connect(&t).await;
        let before = common::checksum(&c).await;
        let quiet = quiet();
        let partial = apply_steps(&t, &quiet, stop_after).await;
        assert!(!partial.finished);
        let r = apply::apply(
            &t,
            &ApplyOptions {
                replan: true,
                ..quiet.clone()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("replan after {stop_after} steps: {e}"));
        assert!(r.finished);
        let helpers = scalar_i64(
            &c,
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'shardready%') + \
             (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
              WHERE n.nspname = 'shardready')",
        )
        .await;
        assert_eq!(helpers, 0, "after {stop_after} steps and a replan");
        let v = shardready::verify::verify(&c, &Default::default())
            .await
            .unwrap();
        assert!(v.ok, "after {stop_after} steps and a replan: {v:?}");
        assert_eq!(common::checksum(&c).await, before);
    }
}

/// Every index, constraint and trigger of the user's tables, and their
/// autovacuum settings: what `abort` must give back.
async fn shape(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT 'c ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
         UNION ALL SELECT 'i ' || indexrelid::regclass::text || ' ' || pg_get_indexdef(indexrelid) \
           FROM pg_index WHERE indrelid::regclass::text IN ('stores', 'orders', 'products', 'line_items') \
         UNION ALL SELECT 't ' || tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal \
         UNION ALL SELECT 'r ' || relname || ' ' || coalesce(array_to_string(reloptions, ','), '') \
           FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' \
         UNION ALL SELECT 's ' || nspname FROM pg_namespace WHERE nspname = 'shardready' \
         ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// `abort` after apply stopped at each step before the first key replaced
/// takes everything back but the column (dropped here with the command it
/// prints); after a swap it keeps what is past the point of no return,
/// lists it, and `apply` then finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_takes_back_an_unfinished_preparation_at_every_step() {
    let (cl, t) = common::tailspin(0.002).await;
    let url = cl.url();
    let c = connect(&t).await;
    let before = common::checksum(&c).await;
    let shape_before = shape(&c).await;
    let plan = run_on(&url, &["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    // The point of no return: the first step that replaces an original key.
    let first_swap = steps
        .iter()
        .position(|s| s["step"] == "swap_key" || s["step"] == "foreign_key")
        .expect("a key swap");
    let quiet = quiet();
    for k in 1..=first_swap {
        apply_steps(&t, &quiet, k).await;
        let out = run_on(&url, &["abort"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "after {k} steps: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("state is removed"), "after {k} steps: {text}");
        // A second abort finds nothing to do.
        let again = run_on(&url, &["abort"]);
        assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to abort"));
        // The column stays, with the command to drop it.
        let drop = "ALTER TABLE \"public\".\"line_items\" DROP COLUMN \"store_id\";";
        assert!(text.contains(drop), "after {k} steps: {text}");
        c.batch_execute(drop).await.unwrap();
        assert_eq!(shape(&c).await, shape_before, "after {k} steps: {text}");
        assert_eq!(common::checksum(&c).await, before, "after {k} steps");
    }
    // Past it: kept and listed; apply finishes from there.
    apply_steps(&t, &quiet, first_swap + 1).await;
    let out = run_on(&url, &["abort"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("the original key is gone") && text.contains("`shardready apply` finishes"),
        "{text}"
    );
    let r = apply::apply(&t, &quiet, None).await.unwrap();
    assert!(r.finished);
    let v = shardready::verify::verify(&c, &Default::default())
        .await
        .unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(common::checksum(&c).await, before);
}

/// Tasks reach their account through a project (NOT NULL) or through an
/// assignee (nullable, a tenth of them NULL); comments through their task
/// or their author (nullable). The keys cascade key changes (ON UPDATE
/// CASCADE) and clear an assignee whose user goes (ON DELETE SET NULL):
/// actions Citus refuses once the tenant is in the key.
const PROJECTS: &str = "
CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE users (
    id bigint PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id) ON UPDATE CASCADE,
    name text NOT NULL);
CREATE TABLE projects (
    id bigint PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id) ON UPDATE CASCADE);
CREATE TABLE tasks (
    id bigint PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES projects (id) ON UPDATE CASCADE ON DELETE CASCADE,
    assignee_id bigint REFERENCES users (id) ON DELETE SET NULL);
CREATE TABLE comments (
    id bigint PRIMARY KEY,
    task_id bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    author_id bigint REFERENCES users (id),
    body text NOT NULL);
INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 3) g;
INSERT INTO users SELECT g, 1 + g % 3, 'u' || g FROM generate_series(1, 30) g;
INSERT INTO projects SELECT g, 1 + g % 3 FROM generate_series(1, 30) g;
INSERT INTO tasks SELECT g, 1 + g % 30, CASE WHEN g % 10 = 0 THEN NULL ELSE 1 + g % 30 END
    FROM generate_series(1, 300) g;
INSERT INTO comments SELECT g, 1 + g % 300, CASE WHEN g % 7 = 0 THEN NULL ELSE 1 + (1 + g % 300) % 30 END, 'c'
    FROM generate_series(1, 900) g;
ANALYZE;
";

/// The ``shardready apply …`` command line after `marker` in a refusal.
fn printed(stderr: &str, marker: &str) -> Vec<String> {
    let start = stderr
        .find(marker)
        .unwrap_or_else(|| panic!("`{marker}` not printed:\n{stderr}"));
    let rest = &stderr[start + 1..];
    rest[..rest.find('`').unwrap()]
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect()
}

/// The two resolutions a user gives by flag: the path a table takes its
/// tenant through (by default a NOT NULL one, so the NULL assignees and
/// authors do not stop apply; `--path` to choose, with the other paths
/// printed when the chosen one leaves rows without a tenant), and
/// `--fix-fk-actions`, the consent to make refused FK actions NO ACTION.
/// Where Citus is installed the result is distributed, and the kept
/// ON DELETE CASCADE still works there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_fk_actions_are_the_users_choice() {
    let citus = common::citus_cluster("paths_and_fk_actions_are_the_users_choice", 1);
    let (cl, t) = citus.unwrap_or_else(cluster);
    let url = cl.url();
    let c = connect(&t).await;
    shardready::db::exec_script(&c, PROJECTS).await.unwrap();
    let before = constraints(&c).await;
    // Refused actions stop the plan, with the flag that resolves them and
    // what it changes.
    let out = run_on(&url, &["plan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("fk-action-on-update") && err.contains("fk-action-on-delete"),
        "{err}"
    );
    assert!(
        err.contains("fails instead of clearing their assignee_id"),
        "{err}"
    );
    assert_eq!(
        printed(&err, "`shardready apply --fix-fk-actions"),
        ["apply", "--fix-fk-actions"]
    );
    // By default: through the NOT NULL keys.
    let out = run_on(&url, &["plan", "--format", "json", "--fix-fk-actions"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let analysis = run_on(&url, &["analyze", "--format", "json", "--fix-fk-actions"]);
    let a: serde_json::Value = serde_json::from_slice(&analysis.stdout).unwrap();
    let path = |table: &str| -> Vec<String> {
        let t = a["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"]["name"] == table)
            .unwrap_or_else(|| panic!("{table} in {a}"));
        t["path"]
            .as_array()
            .unwrap_or_else(|| panic!("{t}"))
            .iter()
            .map(|h| h["fk"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(path("tasks"), ["tasks_project_id_fkey"]);
    assert_eq!(
        path("comments"),
        ["comments_task_id_fkey", "tasks_project_id_fkey"]
    );
    // Chosen through the nullable assignee: the NULLs stop it, and the
    // other path is printed as a command.
    let out = run_on(
        &url,
        &[
            "plan",
            "--fix-fk-actions",
            "--path",
            "tasks=tasks_assignee_id_fkey",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("orphan-rows"), "{err}");
    assert_eq!(
        printed(&err, "`shardready apply --path tasks="),
        [
            "apply",
            "--path",
            "tasks=tasks_project_id_fkey",
            "--fix-fk-actions"
        ],
        "the flags given are kept, the path replaced"
    );
    // A path that names no key of the table is refused, with its keys.
    let out = run_on(&url, &["plan", "--path", "tasks=nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tasks has no foreign key `nope`; its foreign keys: tasks_assignee_id_fkey, tasks_project_id_fkey"),
        "{err}"
    );
    assert_eq!(constraints(&c).await, before, "nothing changed so far");
    // With consent, apply completes; the refused actions are NO ACTION,
    // the accepted ones (ON DELETE CASCADE) kept.
    let out = run_on(&url, &["apply", "--fix-fk-actions"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("resolutions you chose: --fix-fk-actions"),
        "recorded and reported: {said}"
    );
    assert!(
        said.contains("(replaces the one with ON UPDATE CASCADE: now NO ACTION, --fix-fk-actions)"),
        "{said}"
    );
    let actions = |name: &str| {
        let c = &c;
        let name = name.to_string();
        async move {
            let r = c
                .query_one(
                    "SELECT confupdtype::text, confdeltype::text, array_length(conkey, 1) \
                     FROM pg_constraint WHERE conname = $1",
                    &[&name],
                )
                .await
                .unwrap();
            (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i32>(2),
            )
        }
    };
    assert_eq!(
        actions("users_account_id_fkey").await,
        ("a".into(), "a".into(), 1)
    );
    assert_eq!(
        actions("tasks_project_id_fkey").await,
        ("a".into(), "c".into(), 2)
    );
    assert_eq!(
        actions("tasks_assignee_id_fkey").await,
        ("a".into(), "a".into(), 2)
    );
    assert_eq!(
        actions("comments_task_id_fkey").await,
        ("a".into(), "c".into(), 2)
    );
    let verify = run_on(&url, &["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    common::assert_no_helpers_left(&c).await;
    if !shardready::catalog::extension_installed(&c, "citus")
        .await
        .unwrap()
    {
        return;
    }
    // Citus takes the result, and deleting a project still deletes its
    // tasks and their comments.
    let out = run_on(&url, &["distribute"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'h'"
        )
        .await,
        5,
        "accounts, users, projects, tasks, comments"
    );
    c.execute("DELETE FROM projects WHERE id = 7", &[])
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM tasks WHERE project_id = 7").await,
        0
    );
}

/// `abort` right after `kill -9` of apply inside each kind of step,
/// started at once (it waits for the killed session's lock): before the
/// point of no return everything comes back — the same indexes,
/// constraints, triggers and autovacuum settings once the column is dropped
/// with the command abort prints — with every row unchanged and no helper
/// left; past it, what stays is listed and `apply` finishes. Apply runs up
/// to the step, then is started again and killed once that step is seen
/// running: long steps mid-work, short ones while they wait for a table
/// lock the test holds. One abort is itself killed and rerun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_kill_9_inside_every_kind_of_step() {
    use std::process::Stdio;
    use std::time::Instant;
    let cl = common::tailspin_template(0.01).await;
    // (kind, killed mid-work rather than waiting for a lock)
    let kinds = [
        ("add-column", false),
        ("sync-trigger", false),
        ("hold-autovacuum", false),
        ("backfill", true),
        ("not-null", true),
        ("not-null", false),
        ("unique-index", true),
        ("swap-key", false),
        ("foreign-key", true),
        ("foreign-key", false),
        ("drop-trigger", false),
        ("vacuum", false),
        ("analyze", false),
    ];
    let mut outcomes = Vec::new();
    for (trial, (kind, mid_work)) in kinds.iter().enumerate() {
        let db = format!("abort{trial}");
        let url = common::copy_of(&cl, &db);
        let target = Target::parse(&url).unwrap();
        let c = connect(&target).await;
        let rows = common::checksum(&c).await;
        let shape_before = shape(&c).await;
        let plan = run_on(&url, &["plan", "--format", "json"]);
        let plan: shardready::plan::Plan = serde_json::from_slice(&plan.stdout).unwrap();
        let at = plan
            .steps
            .iter()
            .position(|s| s.id().starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} step"));
        if at > 0 {
            apply_steps(&target, &quiet(), at).await;
        }
        let blocker = connect(&target).await;
        if !mid_work {
            blocker
                .batch_execute(
                    "BEGIN; LOCK TABLE stores, orders, products, line_items IN SHARE UPDATE EXCLUSIVE MODE",
                )
                .await
                .unwrap();
        }
        let mut child = common::shardready()
            .args(["apply", "--db", &url, "--trigger-window", "200ms"])
            .args(["--max-rate", "20000", "--lock-timeout", "20ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let mut seen = None;
        while seen.is_none() && t0.elapsed() < Duration::from_secs(60) {
            seen = c
                .query_opt(
                    "SELECT id FROM shardready.step WHERE status = 'running' LIMIT 1",
                    &[],
                )
                .await
                .ok()
                .flatten()
                .map(|r| r.get::<_, String>(0))
                .filter(|s| s.starts_with(kind));
            assert!(
                child.try_wait().unwrap().is_none(),
                "apply ended before {kind} was seen running"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let at = seen.unwrap_or_else(|| panic!("{kind} never seen running"));
        tokio::time::sleep(Duration::from_millis(if *mid_work { 5 } else { 100 })).await;
        let _ = child.kill();
        child.wait().unwrap();
        if !mid_work {
            blocker.batch_execute("ROLLBACK").await.unwrap();
        }
        drop(blocker);
        // The first trial kills its abort too, then aborts again.
        if trial == 0 {
            let mut a = common::shardready()
                .args(["abort", "--db", &url])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            let _ = a.kill();
            a.wait().unwrap();
        }
        let out = run_on(&url, &["abort", "--format", "json"]);
        assert!(
            out.status.success(),
            "killed in {at}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let kept: Vec<String> = report["kept"]
            .as_array()
            .map(|k| k.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            common::checksum(&c).await,
            rows,
            "killed in {at}: rows changed"
        );
        let outcome = if trial == 0 && report["had_plan"] == false {
            // The killed abort had finished its work (the column stays, as
            // it printed).
            c.batch_execute("ALTER TABLE line_items DROP COLUMN IF EXISTS store_id")
                .await
                .unwrap();
            common::assert_no_helpers_left(&c).await;
            assert_eq!(shape(&c).await, shape_before, "killed in {at}");
            "all undone by the killed abort".to_string()
        } else if report["state_removed"] == true {
            // Back to before: drop the column as printed.
            for k in &kept {
                let sql = k
                    .split('`')
                    .nth(1)
                    .filter(|s| s.contains("DROP COLUMN"))
                    .unwrap_or_else(|| panic!("killed in {at}: kept {k}"));
                c.batch_execute(sql).await.unwrap();
            }
            common::assert_no_helpers_left(&c).await;
            assert_eq!(shape(&c).await, shape_before, "killed in {at}: {kept:?}");
            "all undone".to_string()
        } else {
            // Past the point of no return: kept, listed; apply finishes.
            assert!(
                kept.iter().any(|k| k.contains("the original key is gone")),
                "killed in {at}: {kept:?}"
            );
            let out = run_on(&url, &["apply", "--trigger-window", "200ms"]);
            assert!(
                out.status.success(),
                "killed in {at}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            common::assert_no_helpers_left(&c).await;
            let v = shardready::verify::verify(&c, &Default::default())
                .await
                .unwrap();
            assert!(v.ok, "killed in {at}: {v:?}");
            assert_eq!(common::checksum(&c).await, rows, "killed in {at}");
            format!("{} kept, apply finished", kept.len())
        };
        outcomes.push(format!("killed in {at:<48} {outcome}"));
        drop(c);
        cl.sandbox()
            .psql_command(&format!("DROP DATABASE {db}"))
            .unwrap();
    }
    println!("{}", outcomes.join("\n"));
}
