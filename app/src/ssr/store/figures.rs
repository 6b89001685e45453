//! The database's size and contents, as the writer last saw them: `/metrics`, the dashboard
//! page and the benchmarks read them for free.

/// The database's size and contents, kept by the writer as it goes: read at any time for free.
#[derive(Debug, Default)]
pub struct Figures {
    /// Bytes of the file in use (pages that hold data; freed pages are reused).
    pub bytes: std::sync::atomic::AtomicU64,
    /// Task rows: unfinished and ended.
    pub tasks: std::sync::atomic::AtomicU64,
    /// Owners with ended tasks on record.
    pub owners: std::sync::atomic::AtomicU64,
    /// Ended tasks pruned since start (by age or the per-owner cap).
    pub pruned: std::sync::atomic::AtomicU64,
}

impl Figures {
    fn get(field: &std::sync::atomic::AtomicU64) -> u64 {
        field.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `n` ended tasks deleted (by age or the per-owner cap).
    pub(super) fn count_pruned(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.tasks.fetch_sub(n as u64, Relaxed);
        self.pruned.fetch_add(n as u64, Relaxed);
    }

    /// (bytes, tasks, owners, pruned).
    pub fn read(&self) -> (u64, u64, u64, u64) {
        (
            Self::get(&self.bytes),
            Self::get(&self.tasks),
            Self::get(&self.owners),
            Self::get(&self.pruned),
        )
    }
}
