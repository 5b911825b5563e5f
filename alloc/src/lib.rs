//! verge's global allocator: mimalloc, called the way its own `malloc` is meant to be called.
//!
//! The `mimalloc` crate's `GlobalAlloc` asks for every block through `mi_malloc_aligned`, whatever the
//! alignment. For a block over 1 KiB (request buffers, boxed sessions and futures) mimalloc 3's aligned
//! path then over-allocates and adjusts unless the size is a power of two: ~100 instructions more per
//! block, eight such blocks per request. Every block `mi_malloc` returns is aligned to the word (block
//! sizes are whole words, pages start at least 16-aligned), so a layout whose alignment is at most a
//! word takes the plain calls; a larger alignment keeps the aligned ones. Freeing is `mi_free` for both.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every block from `mi_malloc` has.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc behind `GlobalAlloc`.
pub struct Mimalloc;

// SAFETY: each method forwards to mimalloc's matching call with the layout's size (and, above a word,
// its alignment), as `GlobalAlloc` requires: blocks are at least `layout.size()` bytes, aligned to
// `layout.align()` (a word always, the aligned calls otherwise), null on failure, and freed or
// resized only through mimalloc.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain calls only where their word alignment is enough (module doc).
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract), so from mimalloc.
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from mimalloc with `layout`; the new block keeps its alignment (a word
        // for the plain call, `layout.align()` for the aligned one).
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size class a request uses, at every alignment up to a page, come back aligned,
    /// writable, zeroed when asked, and keep their bytes through a resize.
    #[test]
    fn blocks_are_aligned_sized_and_kept_through_a_resize() {
        let alloc = Mimalloc;
        for size in [1, 7, 8, 24, 40, 100, 1_000, 1_500, 3_000, 4_096, 5_000, 70_000, 1 << 20] {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4_096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero layout; every block is freed with the layout it was made with.
                unsafe {
                    let zeroed = alloc.alloc_zeroed(layout);
                    assert!(!zeroed.is_null());
                    assert_eq!(zeroed as usize % align, 0, "size {size} align {align}");
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|b| *b == 0));
                    alloc.dealloc(zeroed, layout);
                    let block = alloc.alloc(layout);
                    assert_eq!(block as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(block, 0xa5, size);
                    let grown = alloc.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown: size {size} align {align}");
                    assert!(std::slice::from_raw_parts(grown, size).iter().all(|b| *b == 0xa5));
                    alloc.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                }
            }
        }
    }
}
