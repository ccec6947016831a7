//! `remote_write`: any bytes as a remote-write 1.0 body, through the codec and the ingest
//! limits, twice: as the body itself (snappy layer), and snappy-compressed first (so the
//! protobuf and per-series checks see the fuzzer's bytes, not just snappy's refusals).
//!
//! Property:
//! - no panic;
//! - bounded memory: a body whose snappy preamble declares more than the limit is refused as
//!   `TooLarge`, and any body declaring `n > 0` bytes is refused as `TooLarge` under the limit
//!   `n - 1` — the declared length is checked before the output buffer is allocated;
//! - a decoded request's structs take at most `MAX_AMPLIFICATION` times the limit (the codec
//!   estimates it from the wire format before decoding: tiny items that decode to 100 times
//!   their size are refused);
//! - `ingest::limits::decode` accepts exactly what the codec accepts;
//! - a decoded request re-encodes to bytes that decode and re-encode to the same bytes;
//! - a series `check_series` accepts has sorted, unique, non-empty label names, a metric name
//!   and no more labels than the limit.

use proxy::config::ingest::IngestLimits;
use proxy::ingest::limits;
use proxy::remote_write::{
    CodecError, MAX_AMPLIFICATION, decode_write_request, encode_write_request,
    write_request_footprint,
};

/// The decompressed-size limit of the run (the gateway's default is larger; the property is the
/// same for any limit, and a small one keeps every execution cheap).
pub const LIMIT: usize = 256 * 1024;

pub fn remote_write(data: &[u8]) {
    body(data);
    if data.len() <= LIMIT
        && let Ok(framed) = snap::raw::Encoder::new().compress_vec(data)
    {
        body(&framed);
    }
}

fn body(body: &[u8]) {
    let declared = snap::raw::decompress_len(body).ok();
    let decoded = decode_write_request(body, LIMIT);
    if let Some(n) = declared {
        if n > LIMIT {
            assert!(
                matches!(decoded, Err(CodecError::TooLarge { .. })),
                "a body declaring {n} bytes (limit {LIMIT}) was not refused as too large: {decoded:?}"
            );
        }
        if n > 0 {
            let tight = decode_write_request(body, n - 1);
            assert!(
                matches!(tight, Err(CodecError::TooLarge { .. })),
                "a body declaring {n} bytes was not refused under the limit {}: {tight:?}",
                n - 1
            );
        }
    }
    let checked = limits::decompress(body, LIMIT)
        .and_then(|raw| limits::decode(&raw, LIMIT, Default::default()).map(|d| d.series_count()));
    assert_eq!(
        decoded.is_ok(),
        checked.is_ok(),
        "codec and ingest limits disagree: {decoded:?} / {checked:?}"
    );
    let Ok(req) = decoded else { return };
    if let Ok(raw) = snap::raw::Decoder::new().decompress_vec(body) {
        let footprint = write_request_footprint(&raw);
        assert!(
            footprint <= MAX_AMPLIFICATION * LIMIT,
            "a request decoding to {footprint} bytes of structs was accepted under the limit {LIMIT}"
        );
    }

    let once = encode_write_request(&req);
    let back = decode_write_request(&once, usize::MAX)
        .unwrap_or_else(|e| panic!("a re-encoded request does not decode: {e}"));
    assert_eq!(
        encode_write_request(&back),
        once,
        "encode∘decode is not stable"
    );

    let lim = IngestLimits::default();
    for mut series in req.timeseries {
        if limits::check_series(&mut series, &lim, 1_700_000_000_000).is_err() {
            continue;
        }
        let labels = &series.labels;
        assert!(labels.len() <= lim.max_labels_per_series);
        assert!(
            labels.windows(2).all(|w| w[0].name < w[1].name),
            "accepted series with unsorted or duplicate labels: {labels:?}"
        );
        assert!(labels.iter().all(|l| !l.name.is_empty()));
        assert!(!limits::metric_name(labels).is_empty());
    }
}
