//! Pipe behaviour: closed downstream pipes, jq standing in for a stage (man pages in sync: `package`).

use crate::support::sh;

/// A big gzip'd input, made once per test run.
fn big_gz() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("s3s-test-big-{}.gz", std::process::id()));
    if !path.exists() {
        let (code, _, err) =
            sh(&format!("seq 1 2000000 | sed 's/$/\\tGET\\t\\/index.html\\t200/' | gzip -1 > {}", path.display()));
        assert_eq!(code, 0, "{err}");
    }
    path
}

#[test]
fn closed_stdout_ends_quietly_with_status_0() {
    let big = big_gz();
    let (code, out, err) = sh(&format!(
        "s3s-cat {0} | head -1; echo \"cat=${{PIPESTATUS[0]}}\"; \
         s3s-cat {0} | s3s-filter -e GET | head -2 >/dev/null; echo \"cat=${{PIPESTATUS[0]}} filter=${{PIPESTATUS[1]}}\"",
        big.display()
    ));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(r#"{"type":"line","file":"#), "{out}");
    assert!(lines[0].ends_with(r#""n":1,"line":"1\tGET\t/index.html\t200"}"#), "{out}");
    assert_eq!(lines[1], "cat=0");
    assert_eq!(lines[2], "cat=0 filter=0");
    assert_eq!(err, "", "a closed pipe must end quietly");
}

#[test]
fn jq_can_stand_in_for_filter() {
    let (code, out, err) = sh("diff <(s3s-cat tests/data/plain.log tests/data/multi.gz | s3s-filter -e GET) \
              <(s3s-cat tests/data/plain.log tests/data/multi.gz | jq -c 'select(.type != \"line\" or (.line | test(\"GET\")))') \
         && s3s-cat tests/data/plain.log | jq -c 'select(.type != \"line\" or (.line | test(\"GET\")))' | s3s-filter -v -e POST | grep -c .");
    assert_eq!(code, 0, "outputs differ or a stage failed: {out}{err}");
    // 6 lines, 1 with GET (line 5 has a lowercase "get"), plus the end record.
    assert_eq!(out.trim(), "2");
}

#[test]
fn filter_output_is_what_jq_parses_back() {
    let (code, out, err) = sh(
        "s3s-cat tests/data/plain.log tests/data/invalid-utf8.log | s3s-filter --replace '\\t' ' | ' | jq -r 'select(.type==\"line\") | .line'",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2026-11-28 | 17:01:04 | FRA56-P2 | 9000 | 203.0.113.5 | get | d111.cloudfront.net | /img/\"quoted\"\\path.png | 503\n"), "{out}");
    assert!(out.contains("caf\u{FFFD} latin-1\n"), "{out}");
}
