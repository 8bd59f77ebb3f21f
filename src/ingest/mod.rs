//! Bulk ingest: the Tailspin Toys dataset ([`tailspin`]) and fast, atomic
//! COPY loading of CSV files, globs, zip archives and generated rows
//! ([`copy`]).

pub mod copy;
pub mod tailspin;
