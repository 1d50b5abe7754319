//! Installing it like a system tool: the generated man pages and completions in sync with the
//! flags, and the Debian package built by `scripts/package` (cargo-deb) as dpkg installs it.
//!
//! The package tests install the .deb with the real dpkg into a scratch root of their own
//! (`dpkg --root DIR --force-script-chrootless`: its own database, the package's maintainer
//! scripts run with DPKG_ROOT=DIR), so they never touch this machine's /usr or dpkg database
//! and can run beside each other. Then they check what an operator would: the binaries run from
//! the installed path, `systemd-analyze verify` accepts the unit, `man -l` renders each page,
//! bash, zsh and fish find the completions where they look for them, removing leaves only the
//! conffiles, purging leaves nothing, lintian finds no error, and the declared dependencies are
//! what dpkg-shlibdeps finds. `scripts/test` builds the package first (`scripts/package`); the
//! tools come from `scripts/services install` (lintian, bash-completion, zsh, fish, dpkg-dev).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::root;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The stages, by binary name: what the package must install, each with its page and completions.
fn stages() -> BTreeSet<String> {
    s3s::tools::commands().into_iter().map(|(name, _)| name.to_string()).collect()
}

/// Run a command; (exit code, stdout, stderr). Panics, naming the tool and where it comes from,
/// if it cannot be started.
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {:?}: {e} (scripts/services install puts the packaging tools on this machine)", cmd.get_program())
    });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Generated files (no package needed)

#[test]
fn man_pages_and_completions_match_the_clap_definitions() {
    let files = s3s::man::generated();
    let fix = "run `cargo run --release --bin s3s-mangen` and commit man/ and completions/";
    for (path, want) in &files {
        let have = std::fs::read(root().join(path)).unwrap_or_default();
        assert!(have == *want, "{} is missing or out of date: {fix}", path.display());
    }
    for dir in ["man", "completions/bash", "completions/zsh", "completions/fish"] {
        let stale = s3s::man::stale_files(&root(), &files, Path::new(dir)).unwrap();
        assert!(stale.is_empty(), "generated files of no stage: {stale:?}: {fix}");
    }
    // Each stage: a page and three completions.
    assert_eq!(files.len(), stages().len() * 4);
    for (_, cmd) in s3s::tools::commands() {
        cmd.debug_assert();
    }
}

#[test]
fn every_binary_is_a_stage_with_a_page_and_completions() {
    // The package takes every binary of the `s3s` crate ("$auto"), and the generator writes
    // pages and completions for `tools::commands()`: the two lists must be the same.
    let mut bins = BTreeSet::new();
    for e in std::fs::read_dir(root().join("src/bin")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".rs") {
            if stem == "s3s-kafka" && !cfg!(feature = "kafka") {
                continue;
            }
            bins.insert(stem.to_string());
        }
    }
    assert_eq!(bins, stages(), "src/bin/*.rs and s3s::tools::commands() differ: list the new stage in commands()");
}

#[test]
fn the_debian_changelog_names_the_crate_version() {
    let changelog = std::fs::read_to_string(root().join("contrib/debian/changelog")).unwrap();
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("s3s ({VERSION}-")),
        "contrib/debian/changelog must begin with an entry for {VERSION} (Cargo.toml's version): {first:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The package

/// The .deb `scripts/package` wrote for this version (or `S3S_DEB`); it must be newer than the
/// binaries and the files it packs, so the tests never pass on an old package.
fn deb() -> PathBuf {
    let path = match std::env::var_os("S3S_DEB") {
        Some(p) => PathBuf::from(p),
        None => {
            let (code, arch, err) = run(Command::new("dpkg").arg("--print-architecture"));
            assert_eq!(code, 0, "dpkg --print-architecture: {err}");
            root().join(format!("target/debian/s3s_{VERSION}-1_{}.deb", arch.trim()))
        }
    };
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}: build the package first with scripts/package (scripts/test does)", path.display()));
    let mut inputs: Vec<PathBuf> = stages().iter().map(|s| crate::support::bin(s)).collect();
    inputs.extend(s3s::man::generated().into_iter().map(|(p, _)| root().join(p)));
    for p in ["Cargo.toml", "man/s3s.7", "contrib/systemd/s3s@.service", "contrib/systemd/example.env", "contrib/debian/postrm"] {
        inputs.push(root().join(p));
    }
    for input in inputs {
        let t = std::fs::metadata(&input).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        assert!(t <= built, "{} is older than {}: rebuild it with scripts/package", path.display(), input.display());
    }
    path
}

/// A scratch root with a dpkg database of its own; removed on drop.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("s3s-pkg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
            std::fs::write(root.join(f), "").unwrap();
        }
        Scratch { root }
    }

    /// dpkg on the scratch root; maintainer scripts run outside a chroot, with DPKG_ROOT set.
    fn dpkg(&self, args: &[&str]) -> (i32, String, String) {
        run(Command::new("dpkg")
            .arg(format!("--root={}", self.root.display()))
            .args(["--force-script-chrootless", "--force-not-root"])
            .args(args))
    }

    /// Install the package. Its dependencies (libc6...) are the host's, not in the scratch
    /// database: `--force-depends`; `declared_dependencies_are_what_dpkg_shlibdeps_finds` checks them.
    fn install(tag: &str) -> Scratch {
        let s = Scratch::new(tag);
        let deb = deb();
        let (code, out, err) = s.dpkg(&["--force-depends", "--install", deb.to_str().unwrap()]);
        assert_eq!(code, 0, "dpkg --install {}: {out}{err}", deb.display());
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Every path under the root except dpkg's own database, relative, with a leading `/`.
    fn paths(&self) -> BTreeSet<String> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let rel = format!("/{}", p.strip_prefix(base).unwrap().display());
                if rel == "/var/lib/dpkg" {
                    continue;
                }
                if p.is_dir() && !p.is_symlink() {
                    walk(&p, base, out);
                }
                out.insert(rel);
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.root, &self.root, &mut out);
        out
    }

    /// Files (not directories) under the root, outside dpkg's database.
    fn files(&self) -> BTreeSet<String> {
        self.paths().into_iter().filter(|p| !self.root.join(&p[1..]).is_dir()).collect()
    }

    /// The package's conffiles, as `dpkg-query` reports them.
    fn conffiles(&self) -> BTreeSet<String> {
        let (_, out, _) = run(Command::new("dpkg-query")
            .arg(format!("--admindir={}", self.path("var/lib/dpkg").display()))
            .args(["--show", "--showformat=${Conffiles}", "s3s"]));
        out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
    }

    fn status(&self) -> String {
        let (_, out, err) = run(Command::new("dpkg-query")
            .arg(format!("--admindir={}", self.path("var/lib/dpkg").display()))
            .args(["--show", "--showformat=${Status}", "s3s"]));
        format!("{out}{}", err.trim())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn the_package_installs_every_stage_with_its_page_completions_and_the_unit() {
    let s = Scratch::install("files");
    let files = s.files();
    let in_usr_bin: BTreeSet<String> = files.iter().filter_map(|f| f.strip_prefix("/usr/bin/")).map(str::to_string).collect();
    assert_eq!(in_usr_bin, stages(), "/usr/bin holds exactly the stages (no generator, no build leftovers)");
    for stage in stages() {
        for want in [
            format!("/usr/share/man/man1/{stage}.1.gz"),
            format!("/usr/share/bash-completion/completions/{stage}"),
            format!("/usr/share/zsh/vendor-completions/_{stage}"),
            format!("/usr/share/fish/vendor_completions.d/{stage}.fish"),
        ] {
            assert!(files.contains(&want), "{want} is not in the package: {files:#?}");
        }
        // From the installed path, as an operator runs it.
        let (code, out, err) = run(Command::new(s.path(&format!("usr/bin/{stage}"))).arg("--version"));
        assert_eq!((code, out.trim()), (0, format!("{stage} {VERSION}").as_str()), "{stage} --version: {err}");
    }
    for want in [
        "/usr/share/man/man7/s3s.7.gz",
        "/lib/systemd/system/s3s@.service",
        "/etc/s3s/example.env",
        "/usr/share/doc/s3s/README.Debian",
        "/usr/share/doc/s3s/copyright",
        "/usr/share/doc/s3s/changelog.Debian.gz",
    ] {
        assert!(files.contains(want), "{want} is not in the package: {files:#?}");
    }
    assert_eq!(
        std::fs::read(s.path("lib/systemd/system/s3s@.service")).unwrap(),
        std::fs::read(root().join("contrib/systemd/s3s@.service")).unwrap(),
        "the unit is installed as it is in contrib/"
    );
    assert_eq!(s.conffiles(), BTreeSet::from(["/etc/s3s/example.env".to_string()]));
    assert_eq!(s.status(), "install ok installed");
}

#[test]
fn removing_leaves_only_the_conffiles_and_purging_leaves_nothing() {
    let s = Scratch::new("purge");
    let before = s.paths();
    let deb = deb();
    let (code, out, err) = s.dpkg(&["--force-depends", "--install", deb.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let conffiles = s.conffiles();
    assert!(!conffiles.is_empty());

    let (code, out, err) = s.dpkg(&["--remove", "s3s"]);
    assert_eq!(code, 0, "dpkg --remove: {out}{err}");
    assert_eq!(s.status(), "deinstall ok config-files");
    assert_eq!(s.files(), conffiles, "after --remove, only the conffiles are left");

    // What the unit leaves at run time: the state directory of an instance (DynamicUser).
    std::fs::create_dir_all(s.path("var/lib/private/s3s/cdn-1/live")).unwrap();
    std::fs::write(s.path("var/lib/private/s3s/cdn-1/runs.log"), "{}\n").unwrap();
    let (code, out, err) = s.dpkg(&["--purge", "s3s"]);
    assert_eq!(code, 0, "dpkg --purge: {out}{err}");
    assert!(s.status().contains("no packages found"), "{}", s.status());
    assert!(!s.path("var/lib/private/s3s").exists(), "purge removes the instances' state");
    let mut left = s.paths();
    left.remove("/var/lib/private"); // made by this test, as systemd would; not the package's
    assert_eq!(left, before, "after --purge nothing of the package is left");
}

#[test]
fn the_installed_unit_verifies_and_its_documentation_resolves() {
    let s = Scratch::install("unit");
    // A template is verified through an instance; `Documentation=man:...` must resolve among the
    // installed pages (MANPATH), and systemd-analyze prints nothing when all is well.
    let units = s.path("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::copy(s.path("lib/systemd/system/s3s@.service"), units.join("s3s@cdn-1.service")).unwrap();
    let (code, out, err) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("s3s@cdn-1.service"))
        .env("MANPATH", s.path("usr/share/man")));
    assert!(code == 0 && err.trim().is_empty(), "systemd-analyze verify: {out}{err}");
    // ExecStart runs the stages by name: the unit's PATH must reach the installed ones.
    let unit = std::fs::read_to_string(units.join("s3s@cdn-1.service")).unwrap();
    let path = unit.lines().find_map(|l| l.strip_prefix("Environment=PATH=")).expect("Environment=PATH= in the unit");
    assert!(path.split(':').any(|d| d == "/usr/bin"), "the unit's PATH {path} misses /usr/bin");
}

#[test]
fn every_installed_man_page_renders() {
    let s = Scratch::install("man");
    let mut pages = Vec::new();
    for sect in ["man1", "man7"] {
        for e in std::fs::read_dir(s.path(&format!("usr/share/man/{sect}"))).unwrap() {
            pages.push(e.unwrap().path());
        }
    }
    assert_eq!(pages.len(), stages().len() + 1, "a page per stage and s3s(7): {pages:?}");
    for page in pages {
        let name = page.file_name().unwrap().to_str().unwrap().split('.').next().unwrap().to_string();
        let (code, out, err) =
            run(Command::new("man").args(["--warnings", "-l"]).arg(&page).env("MANWIDTH", "80").env("MANPAGER", "cat"));
        assert_eq!(code, 0, "man -l {}: {err}", page.display());
        assert!(out.contains("NAME") && out.contains(&name), "man -l {}: no NAME section naming {name}:\n{out}", page.display());
        if name != "s3s" {
            assert!(out.contains("SYNOPSIS") && out.contains("EXIT STATUS"), "man -l {}:\n{out}", page.display());
        }
        // man's exit status says little (it renders garbage with status 0): the sections must be
        // there, and groff's only complaint may be about justifying a long word (with
        // --warnings it also names undefined macros).
        let errors: Vec<&str> =
            err.lines().filter(|l| !l.contains("cannot adjust line") && !l.contains("can't break line")).collect();
        assert!(errors.is_empty(), "man -l {}: {errors:?}", page.display());
    }
}

#[test]
fn installed_completions_are_found_and_offer_the_flags() {
    let s = Scratch::install("completion");
    let share = s.path("usr/share");
    let path = format!("{}:{}", s.path("usr/bin").display(), std::env::var("PATH").unwrap_or_default());

    // bash: bash-completion's own loader finds each stage's file by name under
    // $XDG_DATA_DIRS/bash-completion/completions; completing `s3s-kafka -` offers -b.
    let script = r#"
        source /usr/share/bash-completion/bash_completion
        for cmd in "$@"; do
            __load_completion "$cmd" || { echo "bash-completion found nothing for $cmd"; exit 1; }
            fn=$(complete -p "$cmd" | sed -nE 's/.* -F ([^ ]+) .*/\1/p')
            [ -n "$fn" ] || { echo "no completion function for $cmd"; exit 1; }
            COMP_WORDS=("$cmd" -); COMP_CWORD=1; COMP_LINE="$cmd -"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
            "$fn" "$cmd" - "$cmd"
            echo "$cmd: ${COMPREPLY[*]}"
        done"#;
    let (code, out, err) = run(Command::new("bash")
        .args(["--norc", "--noprofile", "-c", script, "bash"])
        .args(stages())
        .env("XDG_DATA_DIRS", &share)
        .env("PATH", &path));
    assert_eq!(code, 0, "bash completion: {out}{err}");
    for stage in stages() {
        let offered: Vec<&str> = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{stage}: ")))
            .unwrap_or_else(|| panic!("no completions for {stage}: {out}"))
            .split(' ')
            .collect();
        assert!(offered.contains(&"--help") && offered.contains(&"--version"), "bash, `{stage} -`: {offered:?}");
        if stage == "s3s-kafka" {
            assert!(offered.contains(&"-b") && offered.contains(&"--brokers"), "bash, `s3s-kafka -` must offer -b: {offered:?}");
        }
    }

    // fish: vendor_completions.d under $XDG_DATA_DIRS, loaded on first use of the command (with
    // an empty home: --no-config would also drop the completion path).
    let home = s.path("home");
    let (code, out, err) = run(Command::new("fish")
        .args(["-c", "complete -C 's3s-kafka -'"])
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_DATA_DIRS", &share)
        .env("PATH", &path));
    assert_eq!(code, 0, "fish: {err}");
    assert!(out.lines().any(|l| l.split('\t').next() == Some("-b")), "fish, `s3s-kafka -` must offer -b: {out}{err}");

    // zsh: compinit registers every stage from the vendor-completions directory (by `#compdef`),
    // and each completion function parses.
    let zsh = format!(
        "fpath=({} $fpath); autoload -U compinit; compinit -u -D; for c in {}; do \
           print -r -- \"$c=${{_comps[$c]}}\"; autoload -U +X _$c || exit 1; done; functions _s3s-kafka",
        s.path("usr/share/zsh/vendor-completions").display(),
        stages().into_iter().collect::<Vec<_>>().join(" ")
    );
    let (code, out, err) = run(Command::new("zsh").args(["-f", "-c", &zsh]));
    assert_eq!(code, 0, "zsh: {out}{err}");
    for stage in stages() {
        assert!(out.lines().any(|l| l == format!("{stage}=_{stage}")), "zsh's compinit did not register {stage}: {out}{err}");
    }
    assert!(out.contains("'-b+[Bootstrap broker"), "zsh: _s3s-kafka has no -b: {out}");
}

#[test]
fn lintian_finds_no_errors() {
    let deb = deb();
    let (code, out, err) = run(Command::new("lintian").args(["--info", "--display-level", ">=pedantic"]).arg(&deb));
    let tags: Vec<&str> = out.lines().chain(err.lines()).filter(|l| l.len() > 3 && l.as_bytes()[1] == b':').collect();
    let errors: Vec<&&str> = tags.iter().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty() && code == 0, "lintian {} (exit {code}):\n{}", deb.display(), tags.join("\n"));
    // The rest is shown with --nocapture and in the README.
    for t in tags.iter().filter(|l| l.starts_with("W:") || l.starts_with("I:")) {
        println!("{t}");
    }
}

#[test]
fn declared_dependencies_are_what_dpkg_shlibdeps_finds() {
    let s = Scratch::install("deps");
    let (_, depends, _) = run(Command::new("dpkg-deb").args(["--field"]).arg(deb()).arg("Depends"));
    let declared: BTreeSet<String> = depends.trim().split(", ").map(str::to_string).collect();
    // dpkg-shlibdeps wants a debian/control; a minimal one in a directory of its own.
    let work = s.path("shlibdeps");
    std::fs::create_dir_all(work.join("debian")).unwrap();
    std::fs::write(work.join("debian/control"), "Source: s3s\n\nPackage: s3s\nArchitecture: any\n").unwrap();
    let bins: Vec<String> = stages().iter().map(|b| format!("-e{}", s.path(&format!("usr/bin/{b}")).display())).collect();
    let (code, out, err) = run(Command::new("dpkg-shlibdeps").arg("-O").args(&bins).current_dir(&work));
    assert_eq!(code, 0, "dpkg-shlibdeps: {err}");
    let found: BTreeSet<String> = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .unwrap_or_else(|| panic!("dpkg-shlibdeps printed no shlibs:Depends: {out}{err}"))
        .split(", ")
        .map(str::to_string)
        .collect();
    assert_eq!(declared, found, "Depends: of the package vs dpkg-shlibdeps on the installed binaries");
    // And the binaries need nothing else: every library resolves.
    for stage in stages() {
        let (_, out, _) = run(Command::new("ldd").arg(s.path(&format!("usr/bin/{stage}"))));
        assert!(!out.contains("not found"), "{stage}: {out}");
    }
}
