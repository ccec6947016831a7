use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

fn blob(i: u64, len: usize) -> Vec<u8> {
    let mut v = i.to_le_bytes().to_vec();
    v.resize(len.max(8), (i % 251) as u8);
    v
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != LOCK_FILE)
        .collect();
    v.sort();
    v
}

#[test]
fn crc32_known_vector() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn fifo_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    assert!(q.is_empty());
    assert_eq!(q.front().unwrap(), None);
    let seqs: Vec<u64> = (0..5)
        .map(|i| q.push(&blob(i, 100 + i as usize)).unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(q.len(), 5);
    assert_eq!(q.bytes(), (0..5).map(|i| 100 + i).sum::<u64>());
    for (i, seq) in seqs.iter().enumerate() {
        let (s, b) = q.front().unwrap().unwrap();
        assert_eq!(s, *seq);
        assert_eq!(&b[..], &blob(i as u64, 100 + i)[..]);
        // front does not remove
        assert_eq!(q.front().unwrap().unwrap().0, *seq);
        q.remove(s).unwrap();
        q.remove(s).unwrap(); // no-op
    }
    assert!(q.is_empty());
    assert_eq!(q.bytes(), 0);
    assert!(names(dir.path()).is_empty());
}

#[test]
fn file_names_sort_in_sequence_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    let seq = q.push(b"x").unwrap();
    assert_eq!(names(dir.path()), vec![format!("{seq:020}.rw")]);
    assert_eq!(entry_name(42), "00000000000000000042.rw");
}

#[test]
fn empty_blob_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let q = SpillQueue::open(dir.path(), 0).unwrap();
    let seq = q.push(b"").unwrap();
    assert_eq!(q.front().unwrap(), Some((seq, Bytes::new())));
}

#[test]
fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let seqs: Vec<u64> = {
        let q = SpillQueue::open_with(dir.path(), 1 << 20, true).unwrap();
        let seqs = (0..4)
            .map(|i| q.push(&blob(i, 1000)).unwrap())
            .collect::<Vec<_>>();
        q.remove(seqs[0]).unwrap();
        seqs
    };
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(q.len(), 3);
    assert_eq!(q.bytes(), 3000);
    let next = q.push(&blob(99, 10)).unwrap();
    assert!(next > seqs[3], "sequence continues: {next} > {}", seqs[3]);
    let mut got = Vec::new();
    while let Some((s, b)) = q.front().unwrap() {
        got.push((s, b));
        q.remove(s).unwrap();
    }
    let want: Vec<(u64, Bytes)> = seqs[1..]
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, Bytes::from(blob(i as u64 + 1, 1000))))
        .chain([(next, Bytes::from(blob(99, 10)))])
        .collect();
    assert_eq!(got, want);
}

#[test]
fn sequence_continues_after_highest_even_when_all_removed_or_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(entry_name(41)), b"garbage").unwrap();
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    assert!(q.is_empty());
    assert_eq!(q.push(b"a").unwrap(), 42);
    drop(q);
    // The corrupt file kept its sequence number reserved as well.
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(q.push(b"b").unwrap(), 43);
}

#[test]
fn full_at_limit_and_room_after_remove() {
    let dir = tempfile::tempdir().unwrap();
    let q = SpillQueue::open(dir.path(), 250).unwrap();
    let a = q.push(&[1; 100]).unwrap();
    let _b = q.push(&[2; 100]).unwrap();
    match q.push(&[3; 51]) {
        Err(SpillError::Full { used, max }) => assert_eq!((used, max), (200, 250)),
        other => panic!("expected Full, got {other:?}"),
    }
    // exactly at the limit is fine
    let c = q.push(&[3; 50]).unwrap();
    assert!(matches!(q.push(&[4; 1]), Err(SpillError::Full { .. })));
    assert_eq!(q.bytes(), 250);
    q.remove(a).unwrap();
    assert_eq!(q.bytes(), 150);
    q.push(&[4; 100]).unwrap();
    assert_eq!(q.len(), 3);
    // a failed push leaves nothing on disk
    assert_eq!(names(dir.path()).len(), 3);
    let err = q.push(&[5; 1]).unwrap_err();
    assert_eq!(err.to_string(), "spill is full (250 of 250 bytes)");
    q.remove(c).unwrap();
}

#[test]
fn truncated_and_garbage_files_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let seqs: Vec<u64> = {
        let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
        (0..4).map(|i| q.push(&blob(i, 500)).unwrap()).collect()
    };
    // truncate entry 1 (payload cut short), garbage in entry 2, header-only cut in entry 3
    let p1 = dir.path().join(entry_name(seqs[1]));
    let full = fs::read(&p1).unwrap();
    fs::write(&p1, &full[..full.len() - 10]).unwrap();
    let p2 = dir.path().join(entry_name(seqs[2]));
    fs::write(&p2, vec![0xAB; 700]).unwrap();
    let p3 = dir.path().join(entry_name(seqs[3]));
    fs::write(&p3, &full[..5]).unwrap();

    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q.bytes(), 500);
    assert_eq!(
        q.front().unwrap(),
        Some((seqs[0], Bytes::from(blob(0, 500))))
    );
    let mut want = vec![
        entry_name(seqs[0]),
        format!("{}.corrupt", entry_name(seqs[1])),
        format!("{}.corrupt", entry_name(seqs[2])),
        format!("{}.corrupt", entry_name(seqs[3])),
    ];
    want.sort();
    assert_eq!(names(dir.path()), want);
    // the corrupt files are not loaded again
    drop(q);
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(q.len(), 1);
    assert!(q.push(b"new").unwrap() > seqs[3]);
}

#[test]
fn payload_bit_flip_is_detected_at_front() {
    let dir = tempfile::tempdir().unwrap();
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    let a = q.push(&blob(1, 300)).unwrap();
    let b = q.push(&blob(2, 300)).unwrap();
    let pa = dir.path().join(entry_name(a));
    let mut bytes = fs::read(&pa).unwrap();
    bytes[HEADER_LEN + 100] ^= 0x01;
    fs::write(&pa, &bytes).unwrap();
    // same length, so only the checksum catches it: skipped, moved aside, next one returned
    assert_eq!(q.front().unwrap(), Some((b, Bytes::from(blob(2, 300)))));
    assert_eq!(q.len(), 1);
    assert_eq!(q.bytes(), 300);
    assert!(
        dir.path()
            .join(format!("{}.corrupt", entry_name(a)))
            .exists()
    );
}

#[test]
fn missing_file_is_dropped_at_front() {
    let dir = tempfile::tempdir().unwrap();
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    let a = q.push(b"aaa").unwrap();
    let b = q.push(b"bbb").unwrap();
    fs::remove_file(dir.path().join(entry_name(a))).unwrap();
    assert_eq!(q.front().unwrap(), Some((b, Bytes::from_static(b"bbb"))));
    assert_eq!(q.len(), 1);
    assert_eq!(q.bytes(), 3);
}

#[test]
fn leftover_temp_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let seq = {
        let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
        q.push(b"kept").unwrap()
    };
    let tmp = dir.path().join(format!("{}.tmp", entry_name(seq + 1)));
    fs::write(&tmp, b"half an entr").unwrap();
    let other = dir.path().join("README");
    fs::write(&other, b"not ours").unwrap();
    let q = SpillQueue::open(dir.path(), 1 << 20).unwrap();
    assert!(!tmp.exists());
    assert!(other.exists(), "unrelated files are left alone");
    assert_eq!(q.len(), 1);
    assert_eq!(q.front().unwrap(), Some((seq, Bytes::from_static(b"kept"))));
}

#[test]
fn creates_nested_directory() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/spill");
    let q = SpillQueue::open(&nested, 10).unwrap();
    assert!(nested.is_dir());
    assert_eq!(q.dir(), nested);
    assert_eq!(q.max_bytes(), 10);
}

#[test]
fn second_open_of_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = SpillQueue::open(dir.path(), 10).unwrap();
    match SpillQueue::open(dir.path(), 10) {
        Err(SpillError::Io { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::WouldBlock);
        }
        other => panic!("expected Io(WouldBlock), got {other:?}"),
    }
    drop(q);
    SpillQueue::open(dir.path(), 10).unwrap();
}

#[test]
fn io_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let err = SpillQueue::open(&file.join("spill"), 10).unwrap_err();
    assert!(matches!(err, SpillError::Io { .. }));
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SpillQueue>();
}

#[test]
fn concurrent_push_front_remove() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(SpillQueue::open(dir.path(), 1 << 30).unwrap());
    let done = Arc::new(AtomicBool::new(false));

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let id = p * 1_000_000 + i;
                    q.push(&blob(id, 64 + (i as usize % 300))).unwrap();
                }
            })
        })
        .collect();
    // Two consumers racing on the same head: each delivered entry is seen, removal is
    // idempotent, contents always match their checksum.
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let q = Arc::clone(&q);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                loop {
                    match q.front().unwrap() {
                        Some((seq, b)) => {
                            let id = u64::from_le_bytes(b[..8].try_into().unwrap());
                            let i = id % 1_000_000;
                            assert_eq!(&b[..], &blob(id, 64 + (i as usize % 300))[..]);
                            seen.push((seq, id));
                            q.remove(seq).unwrap();
                        }
                        None if done.load(Ordering::SeqCst) && q.is_empty() => break,
                        None => std::thread::yield_now(),
                    }
                }
                seen
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let mut ids: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .map(|(_, id)| id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, PRODUCERS * PER_PRODUCER);
    assert!(q.is_empty());
    assert_eq!(q.bytes(), 0);
    assert!(names(dir.path()).is_empty());
}
