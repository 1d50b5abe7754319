//! Man pages rendered from the same clap definitions the binaries parse with, so the pages in
//! `man/` cannot drift from the flags (a test regenerates and compares them).

/// The roff text of one stage's man page.
pub fn render(cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .date("2026-11-28")
        .source(concat!("s3s ", env!("CARGO_PKG_VERSION")))
        .manual("s3s manual")
        .render(&mut out)
        .expect("rendering to memory cannot fail");
    out
}

/// Write every stage's page into `dir` as `<name>.1`.
pub fn write_all(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, cmd) in crate::tools::commands() {
        std::fs::write(dir.join(format!("{name}.1")), render(cmd))?;
    }
    Ok(())
}
