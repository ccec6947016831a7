//! The large buffers of one remote-write request (the decompressed body, the scanner's tables
//! of series and labels: hundreds of KiB each for a 2,000-series request), kept for the next
//! request. Allocated afresh, every request made the allocator fault in and zero new pages
//! (huge pages, here), which cost a fifth of the plain path's CPU; a few kept sets remove it.
//! The pool is bounded in sets and in the size of a kept buffer.

use std::sync::{Mutex, PoisonError};

use crate::remote_write::wire::{LabelRef, Scanned, SeriesRef};

/// Sets kept: more requests than this at once allocate their own.
const KEEP_SETS: usize = 8;
/// A buffer grown past this (a rare huge request) is freed rather than kept.
const KEEP_BYTES: usize = 32 << 20;

/// One request's buffers, empty, with the capacity earlier requests gave them.
#[derive(Default)]
pub struct RequestBuffers {
    pub raw: Vec<u8>,
    pub series: Vec<SeriesRef<'static>>,
    pub labels: Vec<LabelRef<'static>>,
}

impl RequestBuffers {
    /// Scanner tables borrowing a body, on these allocations.
    pub fn scanned<'a>(
        series: Vec<SeriesRef<'static>>,
        labels: Vec<LabelRef<'static>>,
    ) -> Scanned<'a> {
        Scanned {
            series: recycle(series),
            labels: recycle(labels),
            metadata: Vec::new(),
        }
    }
}

/// An empty `Vec` of another element type of the same layout (here: the same type with
/// another lifetime), on the same allocation: no element is converted, and the standard
/// library collects an empty `into_iter` in place.
pub fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

#[derive(Default)]
pub struct BufferPool {
    free: Mutex<Vec<RequestBuffers>>,
}

impl BufferPool {
    pub fn take(&self) -> RequestBuffers {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    pub fn put(&self, mut b: RequestBuffers) {
        let bytes = |cap: usize, size: usize| cap.saturating_mul(size);
        if b.raw.capacity() > KEEP_BYTES
            || bytes(b.series.capacity(), size_of::<SeriesRef<'_>>()) > KEEP_BYTES
            || bytes(b.labels.capacity(), size_of::<LabelRef<'_>>()) > KEEP_BYTES
        {
            return;
        }
        // `raw` keeps its length: the next decompression overwrites it without zeroing.
        b.series.clear();
        b.labels.clear();
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < KEEP_SETS {
            free.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_vectors_keep_their_allocation() {
        let text = String::from("name");
        let mut labels: Vec<LabelRef<'_>> = Vec::with_capacity(100);
        labels.push(LabelRef {
            name: &text,
            value: &text,
        });
        let ptr = labels.as_ptr() as usize;
        let kept: Vec<LabelRef<'static>> = recycle(labels);
        assert_eq!(kept.capacity(), 100);
        assert_eq!(kept.as_ptr() as usize, ptr);
        assert!(kept.is_empty());
    }

    #[test]
    fn the_pool_is_bounded() {
        let pool = BufferPool::default();
        for _ in 0..KEEP_SETS + 3 {
            pool.put(RequestBuffers {
                raw: Vec::with_capacity(10),
                ..Default::default()
            });
        }
        assert_eq!(pool.free.lock().expect("lock").len(), KEEP_SETS);
        // A huge buffer is not kept.
        let pool = BufferPool::default();
        pool.put(RequestBuffers {
            raw: Vec::with_capacity(KEEP_BYTES + 1),
            ..Default::default()
        });
        assert!(pool.free.lock().expect("lock").is_empty());
        assert_eq!(pool.take().raw.capacity(), 0);
    }
}
