//! The load's one transaction: resolve the tables, lock them (shared
//! retry), drop and capture their foreign keys, COPY each segment, re-add
//! the keys (one set-based validation each), set the sequences, and map
//! server errors back to the input file and line.

use super::*;

pub(super) use crate::catalog::NamedRelation as Relation;

pub(super) enum PlanKind {
    Csv { jobs: Vec<CsvJob>, total_bytes: u64 },
    Binary { rows: u64 },
}

pub(super) struct TablePlan {
    /// As the user typed it.
    pub(super) table: String,
    pub(super) rel: Relation,
    pub(super) copy_sql: String,
    pub(super) kind: PlanKind,
}

pub(super) use crate::catalog::ForeignKeyDefinition as CapturedFk;

pub(super) fn db_error(
    context: impl Into<String>,
    during_load: bool,
) -> impl FnOnce(tokio_postgres::Error) -> CopyError {
    let context = context.into();
    move |source| CopyError::Database {
        context,
        detail: crate::conn::error_text(&source),
        during_load,
        source,
    }
}

pub(super) async fn resolve_table(
    client: &Client,
    table: &str,
    search_path: &str,
) -> Result<Relation, CopyError> {
    let rel = crate::catalog::named_relation(client, table)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => CopyError::BadTableName {
                table: table.to_string(),
                detail: db.message().to_string(),
            },
            None => db_error(format!("looking up table {table}"), false)(e),
        })?;
    let Some(rel) = rel else {
        return Err(CopyError::UnknownTable {
            table: table.to_string(),
            search_path: search_path.to_string(),
        });
    };
    if !rel.holds_rows() {
        return Err(CopyError::NotATable {
            table: table.to_string(),
            kind: rel.kind_label().into(),
        });
    }
    Ok(rel)
}

pub(super) async fn resolve_encoding(
    client: &Client,
    table: &str,
    name: Option<&str>,
) -> Result<Enc, CopyError> {
    let Some(name) = name else {
        return Ok(Enc::from_canonical(None));
    };
    let row = client
        .query_one(
            "SELECT pg_char_to_encoding($1), pg_encoding_to_char(pg_char_to_encoding($1))::text",
            &[&name],
        )
        .await
        .map_err(db_error("checking the encoding name", false))?;
    let id: i32 = row.get(0);
    if id < 0 {
        return Err(CopyError::Options {
            table: table.to_string(),
            detail: format!(
                "{name:?} is not an encoding PostgreSQL knows (e.g. UTF8, LATIN1, WIN1252, SJIS)"
            ),
        });
    }
    let canonical: String = row.get(1);
    Ok(Enc::from_canonical(Some(&canonical)))
}

pub(super) fn copy_sql(rel: &Relation, csv: Option<(&CsvOptions, &Enc)>) -> String {
    let cols = if rel.columns.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = rel.columns.iter().map(|c| ident(c)).collect();
        format!(" ({})", list.join(", "))
    };
    let options = match csv {
        None => "FORMAT binary".to_string(),
        Some((o, enc)) => {
            let mut parts = vec![
                "FORMAT csv".to_string(),
                format!(
                    "DELIMITER {}",
                    literal(&char::from(o.delimiter).to_string())
                ),
                format!("QUOTE {}", literal(&char::from(o.quote).to_string())),
            ];
            if let Some(n) = &o.null {
                parts.push(format!("NULL {}", literal(n)));
            }
            if let Some(e) = &enc.clause {
                parts.push(format!("ENCODING {}", literal(e)));
            }
            parts.join(", ")
        }
    };
    format!("COPY {}{} FROM STDIN ({})", rel.name.sql(), cols, options)
}

/// Loads all the given tables as ONE logical load: one transaction; all or
/// nothing.
///
/// Before anything is written, every table is resolved and every input file
/// opened and its first line checked against the table's columns. Then, in
/// one transaction: the tables are locked (short lock_timeout, retried), the
/// foreign keys defined on them dropped, the data copied (referenced tables
/// first), the keys re-added (validated in one pass each), serial/identity
/// sequences moved up to the loaded maximum, and the transaction committed.
/// The tables the load touches are locked ACCESS EXCLUSIVE while it runs.
///
/// If the returned future is dropped midway, the open COPY is aborted and
/// the transaction rolled back.
pub async fn load(
    client: &mut Client,
    loads: Vec<TableLoad>,
    opts: &LoadOptions,
) -> Result<LoadReport, CopyError> {
    let started = Instant::now();
    let search_path: String = client
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .map_err(db_error("reading search_path", false))?
        .get(0);

    // 1. Resolve everything before writing anything.
    let mut plans = Vec::with_capacity(loads.len());
    let mut binaries: Vec<Option<Box<dyn Iterator<Item = Bytes> + Send>>> = Vec::new();
    for l in loads {
        let rel = resolve_table(client, &l.table, &search_path).await?;
        match l.source {
            Source::Csv { files, options } => {
                options.validate().map_err(|detail| CopyError::Options {
                    table: l.table.clone(),
                    detail,
                })?;
                let enc = resolve_encoding(client, &l.table, options.encoding.as_deref()).await?;
                let jobs = files
                    .into_iter()
                    .map(|file| CsvJob {
                        name: file.display_name(),
                        file,
                        delim: options.delimiter,
                        quote: options.quote,
                        enc: enc.clone(),
                        header: options.header,
                        columns: rel.columns.clone(),
                        segment_bytes: opts.segment_bytes.max(1),
                    })
                    .collect();
                plans.push(TablePlan {
                    copy_sql: copy_sql(&rel, Some((&options, &enc))),
                    table: l.table,
                    rel,
                    kind: PlanKind::Csv {
                        jobs,
                        total_bytes: 0,
                    },
                });
                binaries.push(None);
            }
            Source::Binary { chunks, rows } => {
                plans.push(TablePlan {
                    copy_sql: copy_sql(&rel, None),
                    table: l.table,
                    rel,
                    kind: PlanKind::Binary { rows },
                });
                binaries.push(Some(chunks));
            }
        }
    }

    // 2. Open every input and check its first line against its table.
    let checks: Vec<(usize, String, Vec<CsvJob>)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.kind {
            PlanKind::Csv { jobs, .. } => Some((i, p.table.clone(), jobs.clone())),
            PlanKind::Binary { .. } => None,
        })
        .collect();
    let totals = tokio::task::spawn_blocking(move || -> Result<Vec<(usize, u64)>, CopyError> {
        let mut totals = Vec::new();
        for (i, table, jobs) in checks {
            let mut total = 0;
            for job in &jobs {
                total += job.file.size()?;
                if let Some(found) = first_record_fields(job)? {
                    let expected = job.columns.len();
                    if found != expected && !(expected == 0 && found == 1) {
                        return Err(CopyError::ColumnCountMismatch {
                            file: job.name.clone(),
                            table: table.clone(),
                            expected,
                            found,
                            columns: job.columns.join(", "),
                        });
                    }
                }
            }
            totals.push((i, total));
        }
        Ok(totals)
    })
    .await
    .expect("file checks do not panic")?;
    for (i, total) in totals {
        if let PlanKind::Csv { total_bytes, .. } = &mut plans[i].kind {
            *total_bytes = total;
        }
    }

    // 3. One transaction for all of it.
    let loaded: Vec<String> = plans
        .iter()
        .filter(|p| matches!(p.rel.relkind.as_str(), "r" | "p"))
        .map(|p| p.rel.name.sql())
        .collect();
    let tx = client
        .transaction()
        .await
        .map_err(db_error("starting the load's transaction", false))?;
    match run_load(&tx, plans, binaries, opts).await {
        Ok(mut report) => {
            tx.commit()
                .await
                .map_err(db_error("committing the load", true))?;
            // Statistics for what was just loaded (as PostgreSQL advises
            // after a bulk load): row estimates and plans are right at once
            // instead of after autovacuum's next round. It never blocks
            // the application (SHARE UPDATE EXCLUSIVE).
            for t in &loaded {
                client
                    .batch_execute(&format!("ANALYZE {t}"))
                    .await
                    .map_err(db_error("analyzing the loaded tables", true))?;
            }
            report.seconds = started.elapsed().as_secs_f64();
            Ok(report)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

pub(super) async fn capture_fks(
    tx: &Transaction<'_>,
    oids: &[u32],
) -> Result<Vec<CapturedFk>, CopyError> {
    crate::catalog::foreign_key_definitions(tx, oids)
        .await
        .map_err(db_error(
            "reading the foreign keys of the loaded tables",
            true,
        ))
}

/// Takes the load's locks up front with a short lock_timeout, retrying with
/// exponential backoff and jitter, so the load neither waits forever behind
/// a long transaction nor makes everyone queue behind its lock request.
pub(super) async fn lock_tables(
    tx: &Transaction<'_>,
    plans: &[TablePlan],
    fks: &[CapturedFk],
    opts: &LoadOptions,
) -> Result<(), CopyError> {
    let mut exclusive: Vec<String> = Vec::new();
    let mut share: Vec<String> = Vec::new();
    let mut row: Vec<String> = Vec::new();
    pub(super) fn add(list: &mut Vec<String>, t: &String) {
        if !list.contains(t) {
            list.push(t.clone());
        }
    }
    for fk in fks {
        add(&mut exclusive, &fk.child.sql());
    }
    for fk in fks {
        let parent = fk.parent.sql();
        if !exclusive.contains(&parent) {
            add(&mut share, &parent);
        }
    }
    for p in plans.iter().filter(|p| p.rel.lockable()) {
        let t = p.rel.name.sql();
        if !exclusive.contains(&t) && !share.contains(&t) {
            add(&mut row, &t);
        }
    }
    let mut statements = Vec::new();
    for (list, mode) in [
        (&exclusive, "ACCESS EXCLUSIVE"),
        (&share, "SHARE ROW EXCLUSIVE"),
        (&row, "ROW EXCLUSIVE"),
    ] {
        if !list.is_empty() {
            statements.push(format!("LOCK TABLE {} IN {mode} MODE", list.join(", ")));
        }
    }
    if statements.is_empty() {
        return Ok(());
    }
    let previous: String = tx
        .query_one("SELECT current_setting('lock_timeout')", &[])
        .await
        .map_err(db_error("reading lock_timeout", true))?
        .get(0);
    let timeout = format!("{}ms", opts.lock_timeout.as_millis().max(1));
    tx.query_one("SELECT set_config('lock_timeout', $1, true)", &[&timeout])
        .await
        .map_err(db_error("setting lock_timeout", true))?;
    let attempts = opts.lock_attempts.max(1);
    let policy = crate::db::LockPolicy {
        lock_timeout: opts.lock_timeout,
        max_wait: None,
        max_attempts: Some(attempts),
        statement_timeout: None,
    };
    // One LOCK statement per query, all under one savepoint per attempt.
    let attempt = || async {
        tx.batch_execute("SAVEPOINT shardready_copy_lock").await?;
        for stmt in &statements {
            if let Err(e) = tx.batch_execute(stmt).await {
                tx.batch_execute("ROLLBACK TO SAVEPOINT shardready_copy_lock")
                    .await?;
                return Err(e);
            }
        }
        tx.batch_execute("RELEASE SAVEPOINT shardready_copy_lock")
            .await
    };
    match crate::db::retry_on_lock_timeout(&policy, attempt).await {
        Ok(_) => {}
        Err(crate::db::RetryError::GaveUp { .. }) => {
            let mut all = exclusive.clone();
            all.extend(share.iter().cloned());
            all.extend(row.iter().cloned());
            return Err(CopyError::LockTimeout {
                tables: all.join(", "),
                attempts,
                timeout_ms: opts.lock_timeout.as_millis(),
            });
        }
        Err(crate::db::RetryError::Failed(e)) => {
            return Err(db_error("locking the tables", true)(e))
        }
    }
    // The locks are held now; what follows must not fail on a short timeout.
    tx.query_one("SELECT set_config('lock_timeout', $1, true)", &[&previous])
        .await
        .map_err(db_error("restoring lock_timeout", true))?;
    Ok(())
}

/// Referenced tables first (stable; cycles keep the given order).
pub(super) fn load_order(plans: &[TablePlan], fks: &[CapturedFk]) -> Vec<usize> {
    crate::catalog::referenced_first(plans.len(), |i, j| {
        plans[i].rel.oid != plans[j].rel.oid
            && fks
                .iter()
                .any(|fk| fk.child_oid == plans[i].rel.oid && fk.parent_oid == plans[j].rel.oid)
    })
}

pub(super) fn progress_bar(opts: &LoadOptions, plan: &TablePlan) -> ProgressBar {
    if !opts.progress || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match &plan.kind {
        PlanKind::Csv { total_bytes, .. } => (
            ProgressBar::new(*total_bytes),
            "{prefix:>14.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        ),
        PlanKind::Binary { .. } => (
            ProgressBar::new_spinner(),
            "{prefix:>14.bold} {spinner} {bytes} {binary_bytes_per_sec} {msg}",
        ),
    };
    pb.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(plan.rel.name.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

pub(super) fn status_spinner(opts: &LoadOptions) -> ProgressBar {
    if !opts.progress || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{prefix:>14.bold} {spinner} {msg} ({elapsed})")
    {
        pb.set_style(style);
    }
    pb.set_prefix("constraints");
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

pub(super) async fn run_load(
    tx: &Transaction<'_>,
    plans: Vec<TablePlan>,
    mut binaries: Vec<Option<Box<dyn Iterator<Item = Bytes> + Send>>>,
    opts: &LoadOptions,
) -> Result<LoadReport, CopyError> {
    let mut oids: Vec<u32> = Vec::new();
    for p in &plans {
        if !oids.contains(&p.rel.oid) {
            oids.push(p.rel.oid);
        }
    }

    // Lock, then read the keys again: with the locks held they cannot change.
    let fks = capture_fks(tx, &oids).await?;
    lock_tables(tx, &plans, &fks, opts).await?;
    let fks = capture_fks(tx, &oids).await?;

    // The reader thread works through the files in load order.
    let order = load_order(&plans, &fks);
    let mut jobs = Vec::new();
    for &i in &order {
        match &plans[i].kind {
            PlanKind::Csv { jobs: files, .. } => jobs.extend(files.iter().cloned().map(Job::Csv)),
            PlanKind::Binary { .. } => jobs.push(Job::Binary {
                table: plans[i].rel.name.to_string(),
                chunks: binaries[i].take().expect("each binary source is used once"),
            }),
        }
    }
    let (sender, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
    std::thread::Builder::new()
        .name("copy-reader".into())
        .spawn(move || produce(jobs, sender))
        .map_err(|source| CopyError::Read {
            file: "(reader thread)".into(),
            source,
            during_load: true,
        })?;

    // Drop the keys defined on the loaded tables (the transaction restores
    // them on any failure).
    let mut by_child: Vec<(String, Vec<&CapturedFk>)> = Vec::new();
    for fk in &fks {
        let child = fk.child.sql();
        match by_child.iter_mut().find(|(c, _)| *c == child) {
            Some((_, list)) => list.push(fk),
            None => by_child.push((child, vec![fk])),
        }
    }
    for (child, list) in &by_child {
        let drops: Vec<String> = list
            .iter()
            .map(|fk| format!("DROP CONSTRAINT {}", ident(&fk.name)))
            .collect();
        tx.batch_execute(&format!("ALTER TABLE {child} {}", drops.join(", ")))
            .await
            .map_err(db_error(
                format!("dropping the foreign keys of {child} for the load"),
                true,
            ))?;
    }

    let mut tables = Vec::with_capacity(plans.len());
    for &i in &order {
        tables.push(copy_table(tx, &plans[i], &mut rx, opts).await?);
    }

    // Re-add each key: one set-based validation per key.
    let spinner = status_spinner(opts);
    let mut fk_revalidated = Vec::new();
    for fk in &fks {
        spinner.set_message(format!("validating {} on {}", fk.name, fk.child));
        let sql = format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            fk.child.sql(),
            ident(&fk.name),
            fk.definition
        );
        if let Err(e) = tx.batch_execute(&sql).await {
            spinner.finish_and_clear();
            if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
                let detail = e
                    .as_db_error()
                    .map(|db| db.detail().unwrap_or(db.message()).to_string())
                    .unwrap_or_default();
                return Err(CopyError::ForeignKey {
                    constraint: fk.name.clone(),
                    table: fk.child.to_string(),
                    detail,
                });
            }
            return Err(db_error(
                format!("re-adding foreign key {} on {}", fk.name, fk.child),
                true,
            )(e));
        }
        if let Some(c) = &fk.comment {
            tx.batch_execute(&format!(
                "COMMENT ON CONSTRAINT {} ON {} IS {}",
                ident(&fk.name),
                fk.child.sql(),
                literal(c)
            ))
            .await
            .map_err(db_error(
                format!("restoring the comment of {}", fk.name),
                true,
            ))?;
        }
        if fk.validated {
            fk_revalidated.push(format!("{}.{}", fk.child, fk.name));
        }
    }

    spinner.set_message("setting sequences");
    let mut sequences_set = Vec::new();
    for oid in &oids {
        let plan = plans.iter().find(|p| p.rel.oid == *oid).expect("planned");
        sequences_set.extend(set_sequences(tx, &plan.rel).await?);
    }
    spinner.finish_and_clear();

    Ok(LoadReport {
        tables,
        seconds: 0.0,
        fk_revalidated,
        sequences_set,
    })
}

/// Like the seed's `setval(seq, max(col))`, for every serial/identity column,
/// when the table is not empty — but never moves a sequence backwards.
pub(super) async fn set_sequences(
    tx: &Transaction<'_>,
    rel: &Relation,
) -> Result<Vec<SequenceSet>, CopyError> {
    let sequences = crate::catalog::column_sequences(tx, rel.oid)
        .await
        .map_err(db_error(
            format!("finding the sequences of {}", rel.name),
            true,
        ))?;
    let mut set = Vec::new();
    for seq in sequences {
        let ctx = format!("setting sequence {}", seq.name);
        let max: Option<i64> = tx
            .query_one(
                &format!(
                    "SELECT /* shardready */ max({})::bigint FROM {}",
                    ident(&seq.column),
                    rel.name.sql()
                ),
                &[],
            )
            .await
            .map_err(db_error(ctx.clone(), true))?
            .get(0);
        let Some(max) = max else { continue };
        let state = tx
            .query_one(
                &format!("SELECT last_value, is_called FROM {}", seq.name.sql()),
                &[],
            )
            .await
            .map_err(db_error(ctx.clone(), true))?;
        let (last, called): (i64, bool) = (state.get(0), state.get(1));
        if (called && last >= max) || (!called && last > max) {
            continue;
        }
        tx.query_one("SELECT setval($1::oid::regclass, $2)", &[&seq.oid, &max])
            .await
            .map_err(db_error(ctx, true))?;
        set.push(SequenceSet {
            sequence: seq.name.to_string(),
            value: max,
        });
    }
    Ok(set)
}

pub(super) type Sink = Pin<Box<CopyInSink<Bytes>>>;

pub(super) async fn copy_table(
    tx: &Transaction<'_>,
    plan: &TablePlan,
    rx: &mut mpsc::Receiver<Msg>,
    opts: &LoadOptions,
) -> Result<TableReport, CopyError> {
    let started = Instant::now();
    let pb = progress_bar(opts, plan);
    let job_count = match &plan.kind {
        PlanKind::Csv { jobs, .. } => jobs.len(),
        PlanKind::Binary { .. } => 1,
    };
    let mut rows = 0u64;
    let mut records = 0u64;
    let mut bytes = 0u64;
    for job_index in 0..job_count {
        let csv = match &plan.kind {
            PlanKind::Csv { jobs, .. } => Some(&jobs[job_index]),
            PlanKind::Binary { .. } => None,
        };
        let mut sink: Option<Sink> = None;
        let mut segment = Segment { offset: 0, line: 1 };
        loop {
            let msg = rx.recv().await.ok_or_else(|| CopyError::Source {
                table: plan.rel.name.to_string(),
                detail: "the reader thread stopped unexpectedly".into(),
            })?;
            match msg {
                Msg::SegmentStart(seg) => {
                    segment = seg;
                    let s = tx.copy_in(&plan.copy_sql).await.map_err(db_error(
                        format!("starting COPY into {}", plan.rel.name),
                        true,
                    ))?;
                    sink = Some(Box::pin(s));
                }
                Msg::Data {
                    bytes: data,
                    records: n,
                    input_bytes,
                } => {
                    let s = sink.as_mut().expect("data comes inside a segment");
                    if let Err(e) = s.send(data).await {
                        return Err(rejected(e, plan, csv, segment).await);
                    }
                    records += n;
                    bytes += input_bytes;
                    pb.inc(input_bytes);
                    if csv.is_some() {
                        pb.set_message(format!("{records} rows"));
                    }
                }
                Msg::SegmentEnd => {
                    let mut s = sink.take().expect("a segment ends after it starts");
                    match s.as_mut().finish().await {
                        Ok(n) => rows += n,
                        Err(e) => return Err(rejected(e, plan, csv, segment).await),
                    }
                    if csv.is_none() {
                        pb.set_message(format!("{rows} rows"));
                    }
                }
                Msg::JobEnd { input_bytes } => {
                    bytes += input_bytes;
                    pb.inc(input_bytes);
                    break;
                }
                Msg::Failed(e) => return Err(e),
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    pb.finish_with_message(format!("{rows} rows in {seconds:.1}s"));
    if let PlanKind::Binary { rows: expected } = plan.kind {
        if expected != rows {
            tracing::warn!(
                table = %plan.rel.name.to_string(),
                expected,
                rows,
                "the binary source held a different number of rows than announced"
            );
        }
    }
    Ok(TableReport {
        table: plan.table.clone(),
        rows,
        bytes,
        seconds,
    })
}

/// `COPY orders, line 1234, column ordered_at: "…"` → (1234, Some("ordered_at")).
pub(super) fn parse_copy_context(context: &str, rel: &Relation) -> Option<(u64, Option<String>)> {
    let prefix = format!("COPY {}, line ", rel.name.name);
    let line = context.lines().rev().find(|l| l.starts_with(&prefix))?;
    let rest = &line[prefix.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = rest[..digits].parse().ok()?;
    let column = rest[digits..].strip_prefix(", column ").and_then(|r| {
        rel.columns
            .iter()
            .filter(|c| {
                r.strip_prefix(c.as_str())
                    .is_some_and(|after| after.is_empty() || after.starts_with(':'))
            })
            .max_by_key(|c| c.len())
            .cloned()
    });
    Some((number, column))
}

/// Turns a server error during COPY into one that names the input file and
/// line.
pub(super) async fn rejected(
    e: tokio_postgres::Error,
    plan: &TablePlan,
    csv: Option<&CsvJob>,
    segment: Segment,
) -> CopyError {
    let Some(db) = e.as_db_error() else {
        return db_error(format!("COPY into {}", plan.rel.name), true)(e);
    };
    let mut message = db.message().to_string();
    if let Some(d) = db.detail() {
        message.push_str(&format!(" ({d})"));
    }
    if let Some(h) = db.hint() {
        message.push_str(&format!("; hint: {h}"));
    }
    let sqlstate = db.code().code().to_string();
    let context = db.where_().map(|w| parse_copy_context(w, &plan.rel));
    let (pg_line, column) = match context.flatten() {
        Some((n, c)) => (Some(n), c),
        None => (None, None),
    };
    let (file, line, binary) = match csv {
        None => (plan.rel.name.to_string(), pg_line, true),
        Some(job) => {
            let line = match pg_line {
                None => None,
                Some(n) => {
                    let job = job.clone();
                    tokio::task::spawn_blocking(move || physical_line(&job, segment, n))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten()
                }
            };
            (job.name.clone(), line, false)
        }
    };
    CopyError::Rejected(Box::new(Rejected {
        file,
        line,
        column,
        message,
        sqlstate,
        binary,
    }))
}
