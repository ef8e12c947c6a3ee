//! Writes the man pages into `man/` (run from the workspace root).

fn main() -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
    std::fs::create_dir_all(&dir)?;
    let mut all = barman_integration::man::pages()?;
    all.extend(barman_integration::man::extras()?);
    for page in all {
        let path = dir.join(&page.file);
        std::fs::create_dir_all(path.parent().expect("a file under man/"))?;
        std::fs::write(path, page.text)?;
        println!("wrote man/{}", page.file);
    }
    Ok(())
}
