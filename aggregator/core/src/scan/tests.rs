//! The scanner against serde_json: hand-written cases, every sample object, generated events.

use super::*;

/// What serde_json reads, for comparing.
fn serde(text: &str) -> Option<Event<'_>> {
    serde_json::from_str(text).ok()
}

fn same(text: &str) {
    let fast = event(text).unwrap_or_else(|| panic!("scanner gave up on {text}"));
    assert_eq!(format!("{fast:?}"), format!("{:?}", serde(text).unwrap()), "{text}");
}

#[test]
fn reads_what_serde_reads() {
    same(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete",
        "requestURI":"/api/v1/namespaces/shop/configmaps/app","verb":"get",
        "user":{"username":"system:serviceaccount:shop:api","uid":"u","groups":["g"],
          "extra":{"authentication.kubernetes.io/credential-id":["JTI=j"],"authentication.kubernetes.io/pod-name":["p","q"],"authentication.kubernetes.io/pod-uid":"pu","other":["x"]}},
        "sourceIPs":["10.0.1.57", "10.0.0.1"],"objectRef":{"resource":"configmaps","namespace":"shop","name":"app","apiVersion":"v1"},
        "responseStatus":{"metadata":{},"code":200},"requestObject":{"huge":[1,2.5e3,-3,true,null,"}{]["],"nested":{"a":[{}]}},
        "requestReceivedTimestamp":"2026-03-01T10:05:00.000000Z","annotations":{"authorization.k8s.io/decision":"allow","authentication.k8s.io/stale-token":"subject: x"}}"#,
    );
    same(
        r#"  { "auditID" : "with \"escapes\" \u00e9" , "user" : null, "sourceIPs": [], "timestamp": 1712345678901 }  "#,
    );
    same(
        r#"{"responseStatus":{"code":401.0},"impersonatedUser":{"username":"x"},"Category":"kube-audit","message":"m"}"#,
    );
    same(r#"{"responseStatus":{"code":"403"}}"#);
    same(r#"{"responseStatus":{"code":70000}}"#);
    same(
        r#"{"user":{"extra":{"authentication.kubernetes.io/pod-name":[["nested"],"x"],"authentication.kubernetes.io/pod-uid":[]}}}"#,
    );
    same(
        r#"{"user":{"extra":{"authentication.kubernetes.io/pod-name":7,"authentication.kubernetes.io/pod-uid":{"a":1}}}}"#,
    );
    same("{}");
}

#[test]
fn gives_up_where_serde_must_decide() {
    for text in [
        r#"{"kind":"Event","kind":"Event"}"#, // repeated field
        r#"{"category":"a","Category":"b"}"#, // repeated through an alias
        r#"{"k\u0069nd":"Event"}"#,           // escaped key
        r#"{"kind":7}"#,                      // wrong type
        r#"{"sourceIPs":["10.0.0.1",null]}"#, // wrong element type
        r#"{"user":["as","a","sequence"]}"#,  // serde reads structs from arrays too
        r#"{"auditID":"a"} {"auditID":"b"}"#, // two objects
        r#"{"auditID":"a",}"#,                // trailing comma
        r#"{"auditID":"a""#,                  // cut
        r#"{"requestObject":{"a":[1,2}]}"#,   // brackets that do not match
        r#"{"requestObject":{"a":"unterminated}"#,
        "{\"auditID\":\"tab\there\"}", // raw control character
        r#"{"level":tru}"#,            // not a literal
        r#"{"responseStatus":{"code":200,"code":201}}"#,
    ] {
        assert!(event(text).is_none(), "{text}");
    }
    let deep = format!(r#"{{"requestObject":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    assert!(event(&deep).is_none());
    // Read values too: a picked key's first element is followed into arrays, not forever.
    let deep = format!(
        r#"{{"user":{{"extra":{{"authentication.kubernetes.io/pod-name":{}"p"{}}}}}}}"#,
        "[".repeat(1_000_000),
        "]".repeat(1_000_000)
    );
    assert!(event(&deep).is_none());
    assert!(serde(&deep).is_none(), "serde_json refuses it too (recursion limit)");
}

/// Every object in every sample, scenario and example file (and in the JSON held in their
/// strings), as written, compact and pretty-printed, and cut or corrupted: wherever both
/// readers read an object, they read the same [`Event`].
#[test]
fn reads_every_sample_object_as_serde_does() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["tests/data", "../../correlator/tests/golden", "../../examples"] {
        collect_files(&root.join(dir), &mut files);
    }
    let (mut read, mut gave_up, mut lenient) = (0usize, 0usize, 0usize);
    let mut check = |text: &str| match (event(text), serde(text)) {
        (Some(fast), Some(slow)) => {
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{text}");
            read += 1;
        }
        (None, _) => gave_up += 1,
        (Some(_), None) => lenient += 1,
    };
    for path in &files {
        let Ok(text) = decompressed(path) else { continue };
        let mut objects = Vec::new();
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            objects.push(line.to_string());
        }
        for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>().map_while(Result::ok) {
            walk_objects(&value, &mut objects);
        }
        for (i, object) in objects.iter().enumerate() {
            check(object);
            let trimmed = object.trim_end();
            if trimmed.len() > 2 && serde_json::from_str::<serde_json::Value>(trimmed).is_ok() {
                for cut in [trimmed.len() / 2, trimmed.len() - 1] {
                    if let Some(prefix) = trimmed.get(..cut) {
                        assert!(event(prefix).is_none(), "cut at {cut}: {prefix}");
                    }
                }
                // One structural byte swapped in, at a place that varies from object to object.
                let at = (i * 7919 + trimmed.len() * 31) % trimmed.len();
                for byte in ["\"", "{", "}", "[", "]", ",", ":", "\\"] {
                    let mut bent = trimmed.to_string();
                    if bent.is_char_boundary(at) && bent.is_char_boundary(at + 1) {
                        bent.replace_range(at..=at, byte);
                        check(&bent);
                    }
                }
            }
        }
    }
    assert!(files.len() > 50, "sample files found: {}", files.len());
    assert!(read > 1000, "objects read by both: {read}");
    // Corrupted objects mostly break the structure; the few the scanner still reads are
    // broken only inside values it does not read.
    assert!(lenient < gave_up, "read by the scanner only: {lenient}, given up: {gave_up}");
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn decompressed(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let bytes = std::fs::read(path)?;
    let mut text = String::new();
    crate::decompress(crate::detect_compression(&bytes), &bytes[..])?.read_to_string(&mut text)?;
    Ok(text.trim_start_matches('\u{feff}').to_string())
}

/// Every object in `value`, compact and pretty, including JSON held in strings.
fn walk_objects(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            out.push(serde_json::to_string(value).unwrap());
            out.push(serde_json::to_string_pretty(value).unwrap());
            map.values().for_each(|v| walk_objects(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| walk_objects(v, out)),
        serde_json::Value::String(s) if s.trim_start().starts_with('{') => {
            if let Ok(inner) = serde_json::from_str::<serde_json::Value>(s) {
                walk_objects(&inner, out);
            }
        }
        _ => {}
    }
}

/// A small deterministic generator (xorshift), so the differential test needs no crate and
/// fails the same way every run.
struct Gen {
    state: u64,
    /// Whether the event being made has what the scanner leaves to serde: a repeated or
    /// escaped key, or nesting near serde's limit.
    irregular: bool,
}

impl Gen {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'x>(&mut self, items: &[&'x str]) -> &'x str {
        items[self.below(items.len())]
    }

    /// A JSON string literal, with escapes of every kind now and then.
    fn string(&mut self) -> String {
        let pieces = [
            "a",
            "Event",
            "kubelet/v1.33.2 (linux/amd64)",
            "10.0.1.7",
            "é",
            "日本",
            "😀",
            r#"\""#,
            r"\\",
            r"\/",
            r"\n",
            r"\t",
            r"\u00e9",
            r"\u0000",
            r"\ud83d\ude00",
            "system:serviceaccount:ns:sa",
            " ",
        ];
        let mut out = String::from("\"");
        for _ in 0..self.below(5) {
            out.push_str(self.pick(&pieces));
        }
        out.push('"');
        out
    }

    /// Any JSON value, nested up to `depth` more levels.
    fn value(&mut self, depth: usize) -> String {
        match if depth == 0 { self.below(4) } else { self.below(7) } {
            0 => self.string(),
            1 => self.pick(&["0", "-0", "1.5e3", "200", "-12", "18446744073709551616", "0.000001"]).to_string(),
            2 => self.pick(&["true", "false", "null"]).to_string(),
            3 => self.string(),
            4 | 5 => {
                let n = self.below(4);
                let items: Vec<String> = (0..n).map(|_| self.value(depth - 1)).collect();
                format!("[{}]", items.join(self.pick(&[",", " , ", ",\n  "])))
            }
            _ => {
                let n = self.below(4);
                let members: Vec<String> = (0..n)
                    .map(|_| {
                        let key = self.string();
                        self.irregular |= key.contains('\\');
                        format!("{key}:{}", self.value(depth - 1))
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
        }
    }

    /// A value for a key of `Event`: mostly of the type serde expects, sometimes not.
    fn field(&mut self, key: &str) -> String {
        if self.chance(8) {
            // Any type: serde reads a struct from an array, the scanner leaves that to it.
            self.irregular = true;
            return self.value(2);
        }
        match key {
            "user" | "impersonatedUser" => {
                let extra = format!(
                    r#"{{"authentication.kubernetes.io/pod-name":[{}],"authentication.kubernetes.io/credential-id":[{}],"x":{}}}"#,
                    self.string(),
                    self.string(),
                    self.value(2)
                );
                format!(
                    r#"{{"username":{},"uid":{},"groups":[{}],"extra":{extra}}}"#,
                    self.string(),
                    self.string(),
                    self.string()
                )
            }
            "sourceIPs" => format!("[{},{}]", self.string(), self.string()),
            "objectRef" => format!(
                r#"{{"resource":{},"namespace":{},"name":{},"subresource":{},"apiGroup":{}}}"#,
                self.string(),
                self.string(),
                self.string(),
                self.string(),
                self.string()
            ),
            "responseStatus" => {
                format!(r#"{{"metadata":{{}},"code":{}}}"#, self.pick(&["200", "403", "401", "null"]))
            }
            "annotations" => {
                format!(r#"{{"authorization.k8s.io/decision":{},"other":{}}}"#, self.string(), self.string())
            }
            "requestObject" | "responseObject" | "metadata" | "spec" | "status" => {
                // Deep nesting now and then, around serde_json's limit of 128.
                if self.chance(5) {
                    self.irregular = true;
                    let depth = 120 + self.below(16);
                    format!("{}{}{}", "[".repeat(depth), self.value(1), "]".repeat(depth))
                } else {
                    self.value(4)
                }
            }
            _ => self.string(),
        }
    }

    /// An audit event as its text: keys of `Event` and others, in any order, sometimes
    /// repeated or escaped, with any whitespace.
    fn event(&mut self) -> String {
        let keys = [
            "kind",
            "apiVersion",
            "level",
            "auditID",
            "stage",
            "requestURI",
            "verb",
            "user",
            "impersonatedUser",
            "sourceIPs",
            "userAgent",
            "objectRef",
            "responseStatus",
            "requestObject",
            "responseObject",
            "requestReceivedTimestamp",
            "stageTimestamp",
            "annotations",
            "metadata",
            "spec",
            "status",
            "unknownField",
            "Category",
            "category",
        ];
        let mut members = Vec::new();
        for _ in 0..self.below(12) + 1 {
            let key = self.pick(&keys);
            let written = if self.chance(3) { key.replacen('e', r"\u0065", 1) } else { key.to_string() };
            self.irregular |= written != key;
            members.push(format!("\"{written}\"{}{}", self.pick(&[":", " : ", ":\n"]), self.field(key)));
            if self.chance(3) {
                // A repeated key: serde refuses a repeated field.
                self.irregular = true;
                let again = members[self.below(members.len())].clone();
                members.push(again);
            }
        }
        format!(
            "{}{{{}}}{}",
            self.pick(&["", " ", "\t"]),
            members.join(self.pick(&[",", ", ", ",\n"])),
            self.pick(&["", " ", "\n"])
        )
    }
}

/// Generated events with repeated and escaped keys, escapes of every kind, wrong types and
/// deep nesting: whatever the scanner reads, serde_json reads the same; where serde_json
/// reads an event without repeated or escaped keys, the scanner reads it too (it gives up
/// only where serde must decide); and no cut event is ever read.
#[test]
fn reads_generated_events_as_serde_does() {
    let mut g = Gen { state: 0x9e37_79b9_7f4a_7c15, irregular: false };
    let (mut both, mut gave_up, mut refused) = (0, 0, 0);
    for i in 0..20_000 {
        g.irregular = false;
        let text = g.event();
        let slow = serde(&text);
        match (event(&text), &slow) {
            (Some(fast), Some(slow)) => {
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "event {i}: {text}");
                both += 1;
            }
            (Some(_), None) => panic!("event {i}: the scanner read what serde_json refuses: {text}"),
            (None, Some(_)) => gave_up += 1,
            (None, None) => refused += 1,
        }
        // Near serde_json's nesting limit the scanner may give up a level early: serde then
        // decides, which is slower but the same answer.
        if slow.is_some() && !g.irregular {
            assert!(event(&text).is_some(), "event {i}: gave up on a plain event serde reads: {text}");
        }
        let cut = &text[..text.trim_end().len() - 1];
        if let Some(cut) = text.get(..cut.len()) {
            assert!(event(cut).is_none(), "event {i}: read a cut event: {cut}");
        }
    }
    assert!(
        both > 2_000 && gave_up > 100 && refused > 100,
        "read by both {both}, given up {gave_up}, refused {refused}"
    );
}

#[test]
fn checks_only_the_structure_of_what_it_skips() {
    // serde_json refuses the `01` inside the request body; the event itself is intact.
    let text = r#"{"auditID":"a","requestObject":{"replicas":01}}"#;
    assert!(serde(text).is_none());
    assert_eq!(event(text).unwrap().request_object.unwrap().get(), r#"{"replicas":01}"#);
}

/// The names serde reads a struct's fields by (`#[derive(Deserialize)]` hands them to
/// `deserialize_struct`), caught by a deserializer that only records them.
fn serde_field_names<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    struct Names(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Caught;
    impl std::fmt::Display for Caught {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names caught")
        }
    }
    impl std::error::Error for Caught {}
    impl serde::de::Error for Caught {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Caught
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = Caught;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Caught> {
            Err(Caught)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Caught> {
            self.0 = Some(fields);
            Err(Caught)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut names = Names(None);
    let _ = T::deserialize(&mut names);
    names.0.expect("a struct asks for its fields")
}

/// The scanner's keys are a hand copy of `Event`'s fields: a field added to `Event` and not to
/// the scanner would be read by serde_json and silently skipped by the scanner. Every field
/// must make the scanner either read something or give up (a value of the wrong type).
#[test]
fn the_scanner_knows_every_field_of_event() {
    let names = serde_field_names::<Event<'_>>();
    assert!(names.len() > 15, "{names:?}");
    let nothing = format!("{:?}", Event::default());
    let mut skipped = Vec::new();
    for name in names {
        for value in ["1", r#""s""#, "{}", "[]"] {
            let text = format!(r#"{{"{name}":{value}}}"#);
            if event(&text).is_some_and(|ev| format!("{ev:?}") == nothing)
                && serde(&text).is_some_and(|ev| format!("{ev:?}") != nothing)
            {
                skipped.push(text);
            }
        }
    }
    assert!(skipped.is_empty(), "serde reads these and the scanner skips them: {skipped:?}");
}
