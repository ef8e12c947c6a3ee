//! The full fault-injection soak (issue 20): `SOAK_FAULTS` faults per path (default 11, so
//! 19 paths make over 200), one after the other against one environment, then the table.
//! Exits 1 when any WAL was lost, a tool needed a manual repair or an invariant broke. Run
//! as root after `integration/setup.sh`, through `integration/soak.sh`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use barman_integration::soak::{run, table, Env, Path, Plan};

fn main() -> Result<ExitCode> {
    let per_path = std::env::var("SOAK_FAULTS").ok().and_then(|v| v.parse().ok()).unwrap_or(11);
    let only: Vec<String> = std::env::args().skip(1).collect();
    let paths: Vec<Path> = Path::ALL
        .into_iter()
        .filter(|p| only.is_empty() || only.iter().any(|o| p.label().contains(o.as_str())))
        .collect();
    let plan = Plan { per_path, restore_every: 6, verbose: true };
    let t0 = Instant::now();
    let mut env = Env::start("soak")?;
    let rows = run(&mut env, &plan, &paths)?;
    print!("{}", table(&rows));
    if let Some(secs) = std::env::var("SOAK_HOLD").ok().and_then(|v| v.parse().ok()) {
        println!("SOAK_HOLD: catalogue kept under {} for {secs} s", env.barman.home().display());
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    println!("soak ran {:.0} s", t0.elapsed().as_secs_f64());
    for r in rows.iter().filter(|r| !r.clean()) {
        println!("{}:", r.path.label());
        for n in &r.notes {
            println!("  {n}");
        }
    }
    Ok(if rows.iter().all(barman_integration::soak::Row::clean) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
