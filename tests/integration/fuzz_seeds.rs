//! The fuzz targets' properties (fuzz/checks.rs) over the committed seeds (fuzz/seeds/<target>/)
//! on the stable toolchain, so that `cargo test` and CI catch a parser that breaks one without
//! cargo-fuzz; `scripts/fuzz` runs the same checks under libFuzzer on nightly. A crash that
//! fuzzing finds is added to the seeds and so becomes a regression test here.

#[path = "../../fuzz/checks.rs"]
mod checks;

fn each_seed(target: &str, check: fn(&[u8])) {
    let dir = crate::support::root().join("fuzz/seeds").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
            panic!("fuzz property of {target} broken by seed {}: {e:?}", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn fuzz_seeds_scan() {
    each_seed("scan", checks::check_scan);
}

#[test]
fn fuzz_seeds_records() {
    each_seed("records", checks::check_records);
}

#[test]
fn fuzz_seeds_notify() {
    each_seed("notify", checks::check_notify);
}

#[test]
fn fuzz_seeds_decode() {
    each_seed("decode", checks::check_decode);
}

#[test]
fn fuzz_seeds_runs() {
    each_seed("runs", checks::check_runs);
}

/// A short mutation run of each property on stable, in every test run (CI included): the
/// committed seeds mutated the way libFuzzer does (bit flips, interesting bytes and JSON tokens,
/// erased, copied and spliced ranges), from a fixed random seed so that a failure reproduces.
/// It is not coverage-guided (scripts/fuzz is): it catches a panic or a broken property near
/// the seeds, which is where a new one in a parser first shows. S3S_FUZZ_SMOKE_RUNS sets the
/// number of inputs per target (default 300,000, 20,000 for decode: about 10 s each here); the failing input is written to
/// target/fuzz-smoke-<target>.bin.
fn mutate_each(target: &str, check: fn(&[u8]), default_runs: u64) {
    let dir = crate::support::root().join("fuzz/seeds").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    seeds.sort();
    assert!(!seeds.is_empty());
    let runs: u64 = std::env::var("S3S_FUZZ_SMOKE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_runs);
    // xorshift64*, seeded per target.
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ target.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut rnd = move |n: usize| -> usize {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    };
    const TOKENS: &[&[u8]] = &[
        b"\"", b"\\", b"{", b"}", b"[", b"]", b":", b",", b"\\u", b"\\ud800", b"\\udc00", b"\\u0000", b"null", b"-0", b"1e999",
        b"18446744073709551616", b"\"type\":\"line\"", b"\"type\":\"end\"", b"\"line\":", b"\"n\":", b"\n", b"\r\n", b"\0", b"\xff",
        b"\xc3\xa9", b"\xed\xa0\x80", b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"%FF", b"%2F", b"+", b"Records", b"s3:ObjectCreated:Put",
    ];
    let mut buf = Vec::new();
    for i in 0..runs {
        buf.clear();
        buf.extend_from_slice(&seeds[rnd(seeds.len())]);
        for _ in 0..1 + rnd(4) {
            let len = buf.len();
            match rnd(7) {
                0 if len > 0 => {
                    let p = rnd(len);
                    buf[p] ^= 1 << rnd(8);
                }
                1 => {
                    let p = rnd(len + 1);
                    buf.insert(p, [0u8, 0x1f, 0x20, 0x7f, 0x80, 0xff, b'"', b'\\'][rnd(8)]);
                }
                2 => {
                    let t = TOKENS[rnd(TOKENS.len())];
                    let p = rnd(len + 1);
                    buf.splice(p..p, t.iter().copied());
                }
                3 if len > 0 => {
                    let a = rnd(len);
                    let b = (a + 1 + rnd(64)).min(len);
                    buf.drain(a..b);
                }
                4 if len > 0 => {
                    let a = rnd(len);
                    let b = (a + 1 + rnd(256)).min(len);
                    let copy = buf[a..b].to_vec();
                    let p = rnd(len + 1);
                    buf.splice(p..p, copy);
                }
                5 => {
                    let other = &seeds[rnd(seeds.len())];
                    let cut = rnd(len + 1);
                    buf.truncate(cut);
                    buf.extend_from_slice(&other[rnd(other.len() + 1)..]);
                }
                _ if len > 0 => {
                    let p = rnd(len);
                    buf[p] = rnd(256) as u8;
                }
                _ => buf.push(rnd(256) as u8),
            }
        }
        buf.truncate(65_536);
        if let Err(e) = std::panic::catch_unwind(|| check(&buf)) {
            let path = crate::support::root().join(format!("target/fuzz-smoke-{target}.bin"));
            let _ = std::fs::write(&path, &buf);
            panic!("fuzz property of {target} broken by mutated input {i} (written to {}): {e:?}", path.display());
        }
    }
}

#[test]
fn fuzz_smoke_scan() {
    mutate_each("scan", checks::check_scan, 300_000);
}

#[test]
fn fuzz_smoke_records() {
    mutate_each("records", checks::check_records, 300_000);
}

#[test]
fn fuzz_smoke_notify() {
    mutate_each("notify", checks::check_notify, 300_000);
}

#[test]
fn fuzz_smoke_decode() {
    mutate_each("decode", checks::check_decode, 20_000);
}

#[test]
fn fuzz_smoke_runs() {
    mutate_each("runs", checks::check_runs, 300_000);
}
