//! Removes leftovers of dead test worlds (only names with the worlds' `ck<hex>` prefix)
//! and resets the swept log that `zz_no_leaks` reports. Run before a test suite.

fn main() -> anyhow::Result<()> {
    let removed = cork_integration::cleanup_stale()?;
    for r in &removed {
        println!("removed {r}");
    }
    match std::fs::remove_file(cork_integration::sweep::SWEPT_LOG) {
        Ok(()) => println!("reset {}", cork_integration::sweep::SWEPT_LOG),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if removed.is_empty() {
        println!("nothing stale");
    }
    Ok(())
}
