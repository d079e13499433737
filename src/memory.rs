//! How the process takes memory from the kernel.

/// Turns transparent huge pages off for this process.
///
/// mimalloc asks for huge pages on its memory, so where the kernel grants them on
/// request (`madvise`, a common default) the first touch of every 2 MiB region
/// zeroes all of it. In a checkout storm, with hundreds of requests growing the
/// heap at once, that was a sixth of the machine's CPU spent in the kernel
/// clearing pages, and the paying buyers' p99 up to twice as long
/// (docs/BENCHMARKS.md §5, eighth pass). Small pages are zeroed only where memory
/// is used. Elsewhere than Linux there is nothing to do.
pub fn small_pages_only() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_process_takes_small_pages_only() {
        super::small_pages_only().expect("prctl(PR_SET_THP_DISABLE)");
        assert!(rustix::thread::transparent_huge_pages_are_disabled().expect("prctl(PR_GET_THP_DISABLE)"));
    }
}
