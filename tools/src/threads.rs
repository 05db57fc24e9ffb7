//! Thread counts from the command line, capped: `--threads 1000` on a 16-core machine would
//! start 1,000 decoder threads that only compete for the cores.

/// Threads per core that a flag may ask for; more only adds contention.
const PER_CORE: usize = 4;

/// `asked` (0: one per core, left as 0 for the libraries to resolve), capped at
/// [`PER_CORE`] per core with a note on stderr naming `flag`.
pub fn cap(flag: &str, asked: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let most = PER_CORE * cores;
    if asked > most {
        eprintln!("note: {flag} {asked} capped at {most} ({PER_CORE} per core on {cores} cores)");
        most
    } else {
        asked
    }
}
