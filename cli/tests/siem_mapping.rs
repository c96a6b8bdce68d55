//! docs/siem.md maps each SIEM column to a field of `tokentrail.finding/v1` and of the OCSF
//! Detection Finding. The SIEMs themselves are out of reach here, but the mapping is not: every
//! field it names must hold a value in the records `tokentrail analyze` writes for the bundled
//! incident, so a renamed or moved field breaks this test before it breaks a SIEM's table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The mapping table's rows: (SIEM column, JSON path, OCSF path); a cell that names no path
/// (the whole record) is `None`.
fn mapping() -> Vec<(String, Option<String>, Option<String>)> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/siem.md")).unwrap();
    let header = "| Sentinel column";
    let table = &doc[doc.find(header).expect("the mapping table in docs/siem.md")..];
    let path = |cell: &str| cell.split('`').nth(1).map(str::to_string);
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].to_string(), path(cells[2]), path(cells[3]))
        })
        .collect()
}

/// The values at `path` in `v`: `a.b`, `a[0].b`, `a[type="Pod"].b`.
fn resolve<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut at = vec![v];
    for step in path.split('.') {
        let (name, select) = match step.split_once('[') {
            Some((name, rest)) => (name, Some(rest.trim_end_matches(']'))),
            None => (step, None),
        };
        at = at.into_iter().filter_map(|v| v.get(name)).collect();
        if let Some(select) = select {
            at = at
                .into_iter()
                .filter_map(Value::as_array)
                .flat_map(|items| match select.parse::<usize>() {
                    Ok(i) => items.get(i).into_iter().collect::<Vec<_>>(),
                    Err(_) => {
                        let (key, want) = select.split_once('=').unwrap();
                        let want = want.trim_matches('"');
                        items.iter().filter(|i| i.get(key).and_then(Value::as_str) == Some(want)).collect()
                    }
                })
                .collect();
        }
    }
    at.into_iter().filter(|v| !v.is_null()).collect()
}

fn records(format: &str) -> Vec<Value> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/incident");
    let out = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["analyze", "--cluster", "shop-prod", "-o", format])
        .arg(&example)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_field_the_siem_mapping_names_holds_a_value_in_real_findings() {
    let rows = mapping();
    assert!(rows.len() >= 12, "the table was read: {rows:?}");
    let (json, ocsf) = (records("json"), records("ocsf"));
    let findings: Vec<&Value> = json.iter().filter(|r| r["schema"] == "tokentrail.finding/v1").collect();
    let detections: Vec<&Value> = ocsf.iter().filter(|r| r["class_uid"] == 2004).collect();
    assert!(!findings.is_empty() && !detections.is_empty());
    let mut missing = Vec::new();
    for (column, json_path, ocsf_path) in &rows {
        for (path, records, what) in [(json_path, &findings, "json"), (ocsf_path, &detections, "ocsf")] {
            let Some(path) = path else { continue };
            if !records.iter().any(|r| !resolve(r, path).is_empty()) {
                missing.push(format!("{column}: {what} `{path}`"));
            }
        }
    }
    assert!(missing.is_empty(), "named in docs/siem.md, absent from every record: {missing:?}");
}

#[test]
fn the_path_reader_finds_what_is_there_and_only_that() {
    let v: Value = serde_json::json!({"a": {"b": 1}, "r": [{"type": "Pod", "name": "p"}, {"type": "Node"}]});
    assert_eq!(resolve(&v, "a.b"), [&Value::from(1)]);
    assert_eq!(resolve(&v, "r[type=\"Pod\"].name"), [&Value::from("p")]);
    assert_eq!(resolve(&v, "r[0].type"), [&Value::from("Pod")]);
    assert!(resolve(&v, "r[type=\"Node\"].name").is_empty());
    assert!(resolve(&v, "a.c").is_empty());
}
