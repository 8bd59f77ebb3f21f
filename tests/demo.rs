//! `shardready demo` at a tiny scale: every report file is written, parses,
//! and holds every phase (where Citus is installed, the distribution on the
//! single node and the scale-out onto two workers among them); the chart is
//! a valid SVG and PNG.

mod common;

#[test]
fn demo_writes_a_complete_report() {
    let tmp = common::temp_dir();
    let out = tmp.path().join("report");
    let run = common::shardready()
        .args(["--dir"])
        .arg(tmp.path().join("sandbox"))
        .args([
            "demo",
            "--scale",
            "0.003",
            "--rate",
            "1200/min",
            "--create-orders",
            "300",
            "--settle",
            "2s",
            "--compare-seed",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("verified: yes"), "{stdout}");
    // Where Citus is installed the demo ends with the seed's next unit under
    // the same traffic; elsewhere one line says where it stopped, and why.
    let citus = common::citus_here("demo_writes_a_complete_report");
    if citus {
        assert!(
            stdout.contains(
                "distributed on the single Citus node (like the seed's) under the traffic"
            ) && stdout.contains("Task Count: 1")
                && stdout.contains("scaled out to 2 workers under the traffic"),
            "{stdout}"
        );
    } else {
        assert!(
            stdout.contains("stopped before distribution: Citus is not installed"),
            "{stdout}"
        );
    }
    assert!(
        stderr.contains("SELECT COUNT(*) FROM line_items"),
        "the seed's counts are printed"
    );
    assert!(
        !tmp.path().join("sandbox").exists(),
        "sandbox removed without --keep"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema"], "shardready.demo/v1");
    assert_eq!(json["verified"], true);
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "shardready and the seed's procedure");
    let phases = |i: usize| -> Vec<String> {
        runs[i]["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["phase"].as_str().unwrap().to_string())
            .collect()
    };
    let mut ours = vec![
        "baseline (traffic only)",
        "add column + sync trigger",
        "backfill",
        "NOT NULL",
        "unique indexes",
        "foreign keys + key swap",
        "trigger removal, VACUUM + ANALYZE",
        "after (traffic only)",
    ];
    if citus {
        ours.extend([
            "distribute on Citus",
            "after distribution (traffic only)",
            "scale out to workers",
            "after scale-out (traffic only)",
        ]);
    }
    assert_eq!(phases(0), ours);
    if citus {
        let d = &json["distributed"];
        assert_eq!(d["workers"], 0, "distributed on the single node first: {d}");
        // Then spread over the two new workers, the coordinator drained,
        // nothing lost, still routed to one shard.
        let s = &json["scaled_out"];
        let after = s["after"].as_array().unwrap();
        assert_eq!(after.len(), 3, "{s}");
        assert_eq!(after[0]["shards"], 0, "{s}");
        assert!(
            after[1..].iter().all(|n| n["shards"].as_i64() > Some(0)),
            "{s}"
        );
        assert!(s["routing"].as_str().unwrap().contains("Task Count: 1"));
        for c in s["counts"].as_array().unwrap() {
            assert!(c["after"].as_i64() >= c["before"].as_i64(), "{c}");
        }
        assert!(d["routing"].as_str().unwrap().contains("Task Count: 1"));
        let tables = d["citus_tables"].as_array().unwrap();
        assert!(tables.len() >= 4, "{d}");
        // Every pre-existing row is still there.
        for c in d["counts"].as_array().unwrap() {
            assert!(c["after"].as_i64() >= c["before"].as_i64(), "{c}");
        }
    } else {
        assert!(json["distributed"].is_null());
    }
    assert_eq!(
        phases(1),
        [
            "baseline (traffic only)",
            "add column",
            "backfill",
            "key swap",
            "after (traffic only)"
        ]
    );
    for r in runs {
        assert!(r["create_orders_before_s"].as_f64().unwrap() > 0.0);
        assert!(r["create_orders_after_s"].as_f64().unwrap() > 0.0);
        assert!(r["workload"]["orders"].as_u64().unwrap() > 0);
        assert!(!r["timeline"].as_array().unwrap().is_empty());
    }
    assert_eq!(runs[0]["workload"]["errors"], 0);
    let keys = runs[0]["final_keys"].to_string();
    assert!(
        keys.contains("PRIMARY KEY (store_id, line_item_id)"),
        "{keys}"
    );

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for p in phases(0).iter().chain(phases(1).iter()) {
        assert!(md.contains(p.as_str()), "report.md lacks {p}");
    }
    assert!(md.contains("latency.png"));
    // With --compare-seed, one verdict line per procedure, in the output
    // and the report; the load time is in both; a phase without a
    // transaction shows no latency rather than 0.0 ms.
    assert!(stdout.contains("verdict, side by side:"), "{stdout}");
    for label in [
        "shardready apply: while it prepared the tables",
        "the seed's procedure as written: while it prepared the tables",
    ] {
        assert!(
            stdout.contains(label) && md.contains(label),
            "{label}: {stdout}"
        );
    }
    assert!(
        stdout.contains("loaded ") && md.contains("loaded in"),
        "{stdout}"
    );
    let (ours_text, seeds_text) = stdout
        .split_once("\nthe seed's procedure as written:\n")
        .expect("two phase tables");
    for (r, text) in runs.iter().zip([ours_text, seeds_text]) {
        for p in r["phases"].as_array().unwrap() {
            if p["transactions"] == 0 {
                let prefix = format!("  {:<34} ", p["phase"].as_str().unwrap());
                let row = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
                assert_eq!(row.matches('–').count(), 3, "{row}");
            }
        }
    }
    // Every phase is named on the chart itself, not only in the key.
    for p in phases(0) {
        assert!(svg_text(&out).contains(&p), "{p} is not on the chart");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<svg"),
        "self-contained"
    );
    assert!(!html.contains("src=\"http"), "nothing fetched online");

    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("latency.svg is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(svg.contains("application latency per order (ms, log scale)"));
    let png = image::open(out.join("latency.png")).expect("latency.png decodes");
    assert_eq!((png.width(), png.height()), (1280, 900));

    // The database's own signals beside it: a panel for shardready's run
    // (the seed's procedure has no sampler), in the page too.
    let signals = std::fs::read_to_string(out.join("signals.svg")).unwrap();
    roxmltree::Document::parse(&signals).expect("signals.svg is well-formed XML");
    assert!(
        signals.contains("canary commit, median"),
        "the canary is drawn"
    );
    assert!(signals.contains("WAL written (MB/s)"), "WAL is drawn");
    let png = image::open(out.join("signals.png")).expect("signals.png decodes");
    assert_eq!((png.width(), png.height()), (1280, 520));
    assert_eq!(html.matches("<svg").count(), 2, "both charts in the page");
    let ours = &runs[0];
    let seconds = ours["signals"]
        .as_array()
        .expect("shardready's run has signals");
    assert!(seconds.len() > 5, "{} seconds of signals", seconds.len());
    assert!(runs[1].get("signals").is_none(), "the seed's run has none");
}

/// The text of latency.svg with XML entities decoded.
fn svg_text(out: &std::path::Path) -> String {
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    doc.descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}
