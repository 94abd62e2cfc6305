//! Huge pages for the tables the solvers read at random.
//!
//! BPR reads three factor rows per sample and ALS the fixed side's row of every entry, at
//! random across tables of tens to hundreds of megabytes. With 4 KB pages nearly every such
//! read also misses the TLB, and the page walk adds to the miss itself; backed by 2 MB pages,
//! the same tables need a few hundred TLB entries, which the CPU has. Linux backs memory that
//! asks for it with huge pages when transparent huge pages are `madvise` (the default of many
//! distributions) or `always`. Where they are off, or on other systems, the advice is ignored
//! and nothing else changes: results never depend on it (`docs/perf/bpr.md` measures it).

use std::mem::MaybeUninit;

/// Smaller tables span too few pages for the TLB to matter.
const WORTH_ADVISING: usize = 4 << 20;

/// `len` values made by `value(i)`, in memory the kernel is asked to back with huge pages
/// before its first write (the advice only applies to pages not yet touched).
pub(crate) fn filled<T>(len: usize, value: impl FnMut(usize) -> T) -> Vec<T> {
    let mut values = Vec::with_capacity(len);
    advise(values.spare_capacity_mut());
    values.extend((0..len).map(value));
    values
}

#[cfg(target_os = "linux")]
fn advise<T>(memory: &mut [MaybeUninit<T>]) {
    const PAGE: usize = 4096;
    let (start, bytes) = (memory.as_mut_ptr() as usize, size_of_val(memory));
    if bytes < WORTH_ADVISING {
        return;
    }
    let first_page = start.next_multiple_of(PAGE);
    let whole_pages = (start + bytes - first_page) / PAGE * PAGE;
    // SAFETY: the range is whole pages inside `memory`, which this vector owns; the advice
    // changes how the kernel backs them, never what they hold. A failure (huge pages
    // disabled, an old kernel) leaves small pages, which is what not asking gives: ignored.
    unsafe { libc::madvise(first_page as *mut libc::c_void, whole_pages, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise<T>(_memory: &mut [MaybeUninit<T>]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_ones_asked_for_whatever_the_size() {
        for len in [0, 1, 1000, WORTH_ADVISING / 4 + 3] {
            let values = filled(len, |i| i as u32 * 3);
            assert_eq!(values.len(), len);
            assert!(values.iter().enumerate().all(|(i, &v)| v == i as u32 * 3));
        }
    }
}
