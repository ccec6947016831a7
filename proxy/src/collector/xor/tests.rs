use super::*;

fn roundtrip(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    let chunk = encode(samples);
    decode(&chunk)
        .unwrap()
        .map(|s| s.map(|(t, v)| (t, v.to_bits())))
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

#[test]
fn one_sample() {
    let s = [(1_700_000_000_123, 42.5)];
    assert_eq!(roundtrip(&s), bits(&s));
    let chunk = encode(&s);
    // 2-byte count, then the varint timestamp and the 64 raw value bits.
    assert_eq!(&chunk[..2], &[0, 1]);
}

#[test]
fn empty_chunk_has_no_samples() {
    assert_eq!(roundtrip(&[]), vec![]);
}

#[test]
fn regular_scrapes_use_the_one_bit_buckets() {
    let s: Vec<(i64, f64)> = (0..120).map(|i| (1_000_000 + i * 15_000, 7.0)).collect();
    assert_eq!(roundtrip(&s), bits(&s));
    // Equal deltas and equal values: one bit each for the timestamp and the value.
    assert!(
        encode(&s).len() < 2 + 8 + 8 + 3 + 120 * 2 / 8 + 2,
        "{}",
        encode(&s).len()
    );
}

#[test]
fn delta_of_delta_at_every_bucket_edge() {
    let mut s = vec![(0i64, 1.0), (1000, 2.0)];
    let mut delta = 1000i64;
    // Edges of the 14, 17 and 20 bit buckets (their range is -(2^(n-1)-1) ..= 2^(n-1)),
    // one past each, and the 64-bit bucket both ways.
    for dod in [
        1,
        -1,
        8191,
        -8191,
        8192,
        -8192,
        8193,
        65535,
        -65535,
        65536,
        -65536,
        65537,
        524_287,
        -524_287,
        524_288,
        -524_288,
        524_289,
        1 << 40,
        -(1 << 40),
        0,
    ] {
        delta += dod;
        let (t, _) = *s.last().unwrap();
        s.push((t + delta, s.len() as f64));
    }
    assert_eq!(roundtrip(&s), bits(&s));
}

#[test]
fn extreme_and_negative_timestamps() {
    let s = [
        (-1_000_000, 1.0),
        (-999_000, 2.0),
        (-5, 3.0),
        (0, 4.0),
        (i64::MAX / 4, 5.0),
    ];
    assert_eq!(roundtrip(&s), bits(&s));
    let s = [(i64::MIN + 1, 0.0), (i64::MIN + 2, 0.0), (0, 0.0)];
    assert_eq!(roundtrip(&s), bits(&s));
}

#[test]
fn equal_timestamps_deltas_of_zero() {
    let s = [(10, 1.0), (10, 2.0), (10, 3.0), (11, 3.0)];
    assert_eq!(roundtrip(&s), bits(&s));
}

#[test]
fn nan_payloads_and_special_values_are_kept_bit_for_bit() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let other_nan = f64::from_bits(0x7ff8_0000_0000_0001);
    let s = [
        (1, 0.0),
        (2, -0.0),
        (3, stale),
        (4, f64::NAN),
        (5, other_nan),
        (6, f64::INFINITY),
        (7, f64::NEG_INFINITY),
        (8, f64::MIN_POSITIVE),
        (9, f64::MAX),
        (10, stale),
        (11, 5e-324),
        (12, 1.0),
    ];
    let got = roundtrip(&s);
    assert_eq!(got, bits(&s));
    assert_eq!(got[2].1, 0x7ff0_0000_0000_0002);
}

#[test]
fn values_that_need_all_64_bits_and_window_reuse() {
    // 1.0 ^ -1.0 differs in the sign bit only; 0.1 vs 1e300 differ across the whole word.
    let s = [
        (1, 1.0),
        (2, -1.0),
        (3, 1.0),
        (4, 0.1),
        (5, 1e300),
        (6, f64::from_bits(1)),
        (7, f64::from_bits(u64::MAX >> 1)),
        (8, f64::from_bits(3)),
    ];
    assert_eq!(roundtrip(&s), bits(&s));
}

#[test]
fn random_series_round_trip() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        let n = rng.usize(1..300);
        let mut t = rng.i64(-1_000_000_000..1_000_000_000_000);
        let mut s = Vec::with_capacity(n);
        for _ in 0..n {
            t += rng.i64(0..100_000);
            let v = match rng.u8(0..4) {
                0 => rng.f64() * 1e6,
                1 => f64::from_bits(rng.u64(..)),
                2 => s.last().map_or(1.0, |&(_, v)| v),
                _ => rng.i64(-100..100) as f64,
            };
            s.push((t, v));
        }
        assert_eq!(roundtrip(&s), bits(&s));
    }
}

#[test]
fn malformed_chunks_are_errors_not_panics() {
    assert_eq!(decode(&[]).err(), Some(XorError::NoHeader(0)));
    assert_eq!(decode(&[1]).err(), Some(XorError::NoHeader(1)));
    let full = encode(&[(1, 1.0), (2, 2.5), (4, 3.0), (8, 1e10)]);
    // Every truncation of a valid chunk ends in an error, never a panic or a short success.
    for cut in 2..full.len() {
        let got: Vec<_> = decode(&full[..cut]).unwrap().collect();
        assert!(
            got.last().is_some_and(|r| r.is_err()),
            "cut at {cut}: {got:?}"
        );
    }
    // A header that claims more samples than the stream holds.
    let mut more = full.clone();
    more[1] = 9;
    let got: Vec<_> = decode(&more).unwrap().collect();
    assert!(matches!(
        got.last(),
        Some(Err(XorError::Truncated { total: 9, .. }))
    ));
    // A varint that never ends.
    let endless = [
        0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    let got: Vec<_> = decode(&endless).unwrap().collect();
    assert_eq!(got, vec![Err(XorError::Varint(0))]);
    // Random bytes: any result, no panic.
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..2000 {
        let len = rng.usize(0..40);
        let junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if let Ok(it) = decode(&junk) {
            for _ in it {}
        }
    }
}

#[test]
fn leading_and_bit_count_over_64_is_refused() {
    // Sample 0 (t=0, v=0), sample 1: delta 1, value "11", leading 31, 6-bit count 40 → 71 > 64.
    let mut w = BitWriter::default();
    w.uvarint(0);
    w.write(0, 64);
    w.uvarint(1);
    w.write(0b11, 2);
    w.write(31, 5);
    w.write(40, 6);
    w.write(0, 40);
    let mut chunk = vec![0, 2];
    chunk.extend_from_slice(&w.bytes);
    let got: Vec<_> = decode(&chunk).unwrap().collect();
    assert!(matches!(got[1], Err(XorError::Window { sample: 1, .. })));
}

#[test]
fn header_and_first_samples_follow_the_xor_layout() {
    // The byte-aligned start of the chunk, worked out by hand from xor.go's rules (chunks of a
    // real Prometheus are decoded by the e2e collector suite).
    let chunk = encode(&[(1000, 1.0), (2000, 2.0), (3000, 2.0), (4500, 3.5)]);
    // count 4; zig-zag varint of 1000 = 2000 = 0xd0 0x0f; 1.0 = 0x3ff0000000000000.
    assert_eq!(
        &chunk[..12],
        &[0, 4, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
    );
    // Then uvarint(1000) = 0xe8 0x07.
    assert_eq!(&chunk[12..14], &[0xe8, 0x07]);
    let got = decode(&chunk)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(got, [(1000, 1.0), (2000, 2.0), (3000, 2.0), (4500, 3.5)]);
}

#[test]
fn long_chunks_cut_anywhere_and_bad_windows_mid_chunk_are_errors() {
    // Past the first two samples, with enough bits buffered, fields are cut without a check
    // per field: a truncation anywhere, and an impossible window with plenty of bits after
    // it, must still be errors.
    let samples: Vec<(i64, f64)> = (0..120)
        .map(|i| (1_000 + i * 15_000 + (i % 7) * 3, (i * i) as f64 / 3.0))
        .collect();
    let full = encode(&samples);
    assert_eq!(roundtrip(&samples), bits(&samples));
    for cut in 2..full.len() {
        let got: Vec<_> = decode(&full[..cut]).unwrap().collect();
        assert!(got.last().is_some_and(|r| r.is_err()), "cut at {cut}");
    }
    let mut w = BitWriter::default();
    w.uvarint(0);
    w.write(0, 64);
    w.uvarint(1);
    w.write(0, 1);
    // Sample 2: delta-of-delta 0, value "11", leading 31, count 40 → 71 > 64.
    w.write(0, 1);
    w.write(0b11, 2);
    w.write(31, 5);
    w.write(40, 6);
    w.write(0, 64);
    w.write(0, 64);
    let mut chunk = vec![0, 3];
    chunk.extend_from_slice(&w.bytes);
    let got: Vec<_> = decode(&chunk).unwrap().collect();
    assert!(
        matches!(got[2], Err(XorError::Window { sample: 2, .. })),
        "{got:?}"
    );
    // Random bytes long enough for the unchecked cuts: any result, no panic.
    let mut rng = fastrand::Rng::with_seed(12);
    for _ in 0..2000 {
        let mut junk: Vec<u8> = vec![rng.u8(..), rng.u8(..)];
        junk.extend((0..rng.usize(0..300)).map(|_| rng.u8(..)));
        if let Ok(it) = decode(&junk) {
            for _ in it {}
        }
    }
}

#[test]
fn a_window_keeps_its_edges_and_stops_after_them() {
    let samples: Vec<(i64, f64)> = (0..10).map(|i| (i * 10, i as f64)).collect();
    let chunk = encode(&samples);
    let mut out = Vec::new();
    let count = decode_window(&chunk, 20, 50, &mut out, |t, v| (t, v)).unwrap();
    assert_eq!(out, [(20, 2.0), (30, 3.0), (40, 4.0), (50, 5.0)]);
    // Two before, and the first after (decoding stops there).
    assert_eq!(
        count,
        WindowCount {
            kept: 4,
            outside: 3
        }
    );
    let mut none = Vec::new();
    let count = decode_window(&chunk, 1000, 2000, &mut none, |t, v| (t, v)).unwrap();
    assert_eq!((none.len(), count.outside), (0, 10));
    assert!(decode_window(&chunk[..chunk.len() - 2], 0, 1000, &mut none, |t, v| (t, v)).is_err());
}

/// The iterator's samples, and its error if it ended in one.
fn by_iterator(chunk: &[u8]) -> (Vec<(i64, u64)>, Option<XorError>) {
    let mut samples = Vec::new();
    let it = match decode(chunk) {
        Ok(it) => it,
        Err(e) => return (samples, Some(e)),
    };
    for s in it {
        match s {
            Ok((t, v)) => samples.push((t, v.to_bits())),
            Err(e) => return (samples, Some(e)),
        }
    }
    (samples, None)
}

#[test]
fn the_window_loop_agrees_with_the_iterator_on_good_and_broken_chunks() {
    let mut rng = fastrand::Rng::with_seed(13);
    let mut fast_samples = 0usize;
    for round in 0..3000 {
        // Regular scrapes with jitter and gaps (every bucket), values from constant to noisy.
        let n = rng.usize(0..200);
        let mut t = rng.i64(-1_000_000..1_000_000);
        let mut v = rng.f64() * 1000.0;
        let samples: Vec<(i64, f64)> = (0..n)
            .map(|_| {
                t += match rng.u8(0..20) {
                    0 => rng.i64(0..2_000_000),
                    1 => rng.i64(0..(1 << 40)),
                    _ => 15_000 + rng.i64(-50..50),
                };
                v = match rng.u8(0..4) {
                    0 => v,
                    1 => v + 1.0,
                    2 => f64::from_bits(rng.u64(..)),
                    _ => rng.f64() * 100.0,
                };
                (t, v)
            })
            .collect();
        let mut chunk = encode(&samples);
        // A third of the chunks broken: cut short, or a byte changed.
        match round % 3 {
            1 if chunk.len() > 2 => chunk.truncate(rng.usize(2..chunk.len())),
            2 if chunk.len() > 2 => {
                let at = rng.usize(2..chunk.len());
                chunk[at] ^= 1 << rng.u8(0..8);
            }
            _ => {}
        }
        let (expected, error) = by_iterator(&chunk);
        let mut got = Vec::new();
        let result = decode_window(&chunk, i64::MIN, i64::MAX, &mut got, |t, v: f64| {
            (t, v.to_bits())
        });
        assert_eq!(
            got.len(),
            expected.len(),
            "round {round}: {result:?} vs {error:?}, {} vs {}",
            got.len(),
            expected.len()
        );
        assert_eq!(got, expected, "round {round}");
        assert_eq!(result.err(), error, "round {round}");
        fast_samples += got.len().saturating_sub(2);
        // A window inside an unbroken chunk (timestamps grow): what the iterator gives inside.
        if round % 3 == 0 && !expected.is_empty() {
            let a = expected[rng.usize(0..expected.len())].0;
            let b = expected[rng.usize(0..expected.len())].0;
            let (start, end) = (a.min(b), a.max(b));
            let mut inside = Vec::new();
            let count = decode_window(&chunk, start, end, &mut inside, |t, v: f64| {
                (t, v.to_bits())
            })
            .unwrap();
            let want: Vec<_> = expected
                .iter()
                .copied()
                .filter(|(t, _)| (start..=end).contains(t))
                .collect();
            assert_eq!(inside, want, "round {round}");
            assert_eq!(count.kept as usize, want.len());
        }
    }
    assert!(fast_samples > 100_000, "{fast_samples} samples compared");
}
