//! The sandbox lifecycle against real PostgreSQL binaries.

use shardready::sandbox::{Sandbox, SandboxOptions, TestCluster};

#[test]
fn throwaway_cluster_starts_answers_and_is_removed() {
    let cluster = TestCluster::start().expect("test cluster starts");
    let dir = cluster.sandbox().dir.clone();
    let pid = cluster.sandbox().running_pid().expect("running");
    cluster
        .sandbox()
        .psql_command("SELECT 1")
        .expect("psql connects");
    drop(cluster);
    assert!(!dir.exists(), "directory removed");
    // SAFETY: signal 0 only checks existence.
    assert!(unsafe { libc::kill(pid, 0) } != 0, "server process gone");
}
