//! `devcert DIR [NAME...]`: writes a self-signed development certificate
//! (`DIR/cert.pem`, `DIR/key.pem`) for the given host names (default
//! `localhost` and `127.0.0.1`). For the local demo and tests only.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = vec!["localhost".into(), "127.0.0.1".into()];
    }
    let (cert, key) = devtools::write_dev_cert(&dir, &names)?;
    println!("{}\n{}", cert.display(), key.display());
    Ok(())
}
