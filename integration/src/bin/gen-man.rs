//! Writes the man pages into `man/` (run from the workspace root).

fn main() -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
    std::fs::create_dir_all(&dir)?;
    for page in barman_integration::man::pages()? {
        std::fs::write(dir.join(&page.file), page.text)?;
        println!("wrote man/{}", page.file);
    }
    Ok(())
}
