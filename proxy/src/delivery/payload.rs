//! One encoded request of a delivery queue ([`Payload`]) and its form in the disk spill.

use bytes::Bytes;
use http::HeaderValue;

/// One encoded request.
#[derive(Debug, Clone)]
pub struct Payload {
    pub body: Bytes,
    pub series: usize,
    pub samples: usize,
    /// Sent with this request only, after the endpoint's own (the ingest tenant header).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

/// A payload as stored in the spill: `series` u32, `samples` u32, header count u16, then per
/// header its name and value each as u16 length + bytes, then the body.
pub(super) fn spill_encode(p: &Payload) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.body.len() + 64);
    out.extend_from_slice(&(p.series as u32).to_le_bytes());
    out.extend_from_slice(&(p.samples as u32).to_le_bytes());
    out.extend_from_slice(&(p.headers.len() as u16).to_le_bytes());
    for (name, value) in &p.headers {
        for part in [name.as_str().as_bytes(), value.as_bytes()] {
            out.extend_from_slice(&(part.len() as u16).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out.extend_from_slice(&p.body);
    out
}

pub(super) fn spill_decode(blob: Bytes) -> Option<Payload> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<Bytes> {
        let part = blob.get(at..at + n)?;
        at += n;
        Some(blob.slice_ref(part))
    };
    let u32_at =
        |b: Bytes| -> Option<u32> { Some(u32::from_le_bytes(b.as_ref().try_into().ok()?)) };
    let u16_at = |b: Bytes| -> Option<usize> {
        Some(u16::from_le_bytes(b.as_ref().try_into().ok()?) as usize)
    };
    let series = u32_at(take(4)?)? as usize;
    let samples = u32_at(take(4)?)? as usize;
    let count = u16_at(take(2)?)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let n = u16_at(take(2)?)?;
        let name = http::HeaderName::from_bytes(&take(n)?).ok()?;
        let n = u16_at(take(2)?)?;
        let value = HeaderValue::from_bytes(&take(n)?).ok()?;
        headers.push((name, value));
    }
    let body = blob.slice(at..);
    Some(Payload {
        body,
        series,
        samples,
        headers,
    })
}
