//! shardready: prepare a single-node, multi-tenant PostgreSQL database for
//! distribution with Citus while the application keeps running.
//!
//! Data flows one way: [`catalog`] (the only place that reads the schema)
//! → [`analyze`] (tenant inference, the rules Citus enforces, data checks,
//! query audit, skew) → [`plan`] (ordered steps; each kind in
//! [`plan::steps`] owns its SQL, lock class, done-check and undo) →
//! [`apply`] (the executor, its state and the backfill controller) →
//! [`report`] (all rendering), then [`citus`] (distribute) and [`verify`].
//!
//! Underneath: [`db`] (the error type, one statement per query, the
//! lock-timeout retry loop, the advisory-locked session), [`conn`] (where
//! and how to connect), [`sandbox`] (local clusters, also for tests),
//! [`sql`] (identifier and literal quoting), [`stat_statements`] (the
//! application's statements over a window, from pg_stat_statements). Around them: [`ingest`] (COPY
//! loader, the Tailspin dataset), [`workload`] (the seed's traffic and its
//! latency), [`after`] (the application after our work beside its baseline), [`cron`] (pg_cron jobs), [`baseline`] (the seed's procedure
//! as written) and [`demo`] (the seed exercise end to end).

pub mod after;
pub mod analyze;
pub mod apply;
pub mod baseline;
pub mod catalog;
pub mod citus;
pub mod conn;
pub mod cron;
pub mod db;
pub mod demo;
pub mod ingest;
pub mod plan;
pub mod report;
pub mod sandbox;
pub(crate) mod sql;
pub mod stat_statements;
pub mod verify;
pub mod workload;
