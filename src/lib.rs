//! shardready: prepare a single-node, multi-tenant PostgreSQL database for
//! distribution with Citus while the application keeps running.
//!
//! Data flows one way: [`catalog`] → `analyze` → `plan` → `apply` → `report`.
//! The foundation modules are [`conn`] (where to connect), [`sandbox`]
//! (throwaway local clusters), [`sql`] (identifier quoting) and [`ingest`]
//! (the Tailspin Toys dataset and fast COPY).

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
pub mod sql;
pub mod verify;
pub mod workload;
