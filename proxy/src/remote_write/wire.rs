//! Zero-copy reading of a decompressed `WriteRequest`: each series' labels as `&str` borrowed
//! from the body, its sample count and newest timestamp, and the encoded bytes of the series so
//! that a series no rule changes is forwarded as it came, without decoding into owned strings
//! and encoding again.
//!
//! The scanner only takes the common shape: series made of labels and float samples. Anything
//! else (exemplars, native histograms, unknown fields, a field repeated inside a label) marks
//! the series `plain: false` and the caller decodes that one series with prost; a structural
//! error returns `Err` and the caller decodes the whole request with prost, whose error it then
//! reports. So the scanner never accepts what prost would refuse, and never has to word errors.

use super::proto::{Label, Sample, TimeSeries};

/// A label borrowed from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// Read access to a label, owned or borrowed.
pub trait LabelPair {
    fn name(&self) -> &str;
    fn value(&self) -> &str;
}

impl LabelPair for Label {
    fn name(&self) -> &str {
        &self.name
    }
    fn value(&self) -> &str {
        &self.value
    }
}

impl LabelPair for LabelRef<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn value(&self) -> &str {
        self.value
    }
}

/// One `TimeSeries` of the body.
#[derive(Debug, Clone)]
pub struct SeriesRef<'a> {
    /// The encoded `TimeSeries` message (without its field key and length).
    pub encoded: &'a [u8],
    /// Its labels: `labels[start..end]` of [`Scanned::labels`].
    pub labels: (u32, u32),
    pub samples: u32,
    /// The newest sample timestamp, `i64::MIN` without samples.
    pub max_timestamp: i64,
    /// Only labels and float samples, each label with at most one name and one value.
    pub plain: bool,
    /// The encoded label fields of the series when they are all in prost's own encoding (see
    /// [`canonical_labels`]): hashing these bytes gives [`labels_hash`] without copying.
    pub canonical_labels: Option<&'a [u8]>,
}

impl SeriesRef<'_> {
    /// [`labels_hash`] of this series' labels (`labels` from [`Scanned::labels_of`]).
    pub fn labels_hash(&self, labels: &[LabelRef<'_>]) -> u64 {
        match self.canonical_labels {
            Some(bytes) => xxhash_rust::xxh3::xxh3_64(bytes),
            None => labels_hash(labels),
        }
    }
}

/// Hash of a label set (in the order given; callers sort by name): xxh3 of the labels as prost
/// encodes them as `TimeSeries` field 1 (`0a len [0a n name] [12 m value]`, empty strings
/// omitted). That is the byte string most series already arrive as, so a scanned series is
/// hashed in place ([`SeriesRef::labels_hash`]); the encoding is unambiguous, so distinct label
/// sets differ in what is hashed. Stable across processes of any build.
pub fn labels_hash<L: LabelPair>(labels: &[L]) -> u64 {
    use std::cell::RefCell;
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        for label in labels {
            encode_label(&mut buf, label.name(), label.value());
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&buf);
        // Don't keep a huge buffer around after one pathological series.
        if buf.capacity() > 64 * 1024 {
            *buf = Vec::new();
        }
        hash
    })
}

/// Byte order of two strings, compared inline when they are short (label names and values
/// mostly are): a call to `memcmp` per comparison was a visible share of the ingest path.
#[inline]
pub fn cmp_short(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if a.len() > 32 || b.len() > 32 {
        return a.cmp(b);
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Equality of two strings, inline when they are short (see [`cmp_short`]).
#[inline]
pub fn eq_short(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 32 {
        return a == b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Append one label as `TimeSeries` field 1, as prost encodes it (an empty string is not
/// written).
#[inline]
pub fn encode_label(out: &mut Vec<u8>, name: &str, value: &str) {
    let (n, v) = (name.len(), value.len());
    if n > 0 && v > 0 && n < 128 && v < 128 && n + v + 4 < 128 {
        // The common case: every length fits one byte.
        out.reserve(n + v + 6);
        out.extend_from_slice(&[0x0a, (n + v + 4) as u8, 0x0a, n as u8]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&[0x12, v as u8]);
        out.extend_from_slice(value.as_bytes());
        return;
    }
    let field = |len: usize| {
        if len == 0 {
            0
        } else {
            1 + prost::encoding::encoded_len_varint(len as u64) + len
        }
    };
    out.push(0x0a);
    prost::encoding::encode_varint((field(n) + field(v)) as u64, out);
    for (key, text) in [(0x0a, name), (0x12, value)] {
        if !text.is_empty() {
            out.push(key);
            prost::encoding::encode_varint(text.len() as u64, out);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// A scanned `WriteRequest`.
#[derive(Debug, Default)]
pub struct Scanned<'a> {
    pub series: Vec<SeriesRef<'a>>,
    /// Every series' labels, one after the other.
    pub labels: Vec<LabelRef<'a>>,
    /// The encoded `MetricMetadata` messages.
    pub metadata: Vec<&'a [u8]>,
}

impl<'a> Scanned<'a> {
    pub fn labels_of(&self, series: &SeriesRef<'a>) -> &[LabelRef<'a>] {
        &self.labels[series.labels.0 as usize..series.labels.1 as usize]
    }
}

/// The body is not in the shape the scanner reads; decode it with prost instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotScanned;

pub(crate) const VARINT: u64 = 0;
pub(crate) const FIXED64: u64 = 1;
pub(crate) const LEN: u64 = 2;
pub(crate) const FIXED32: u64 = 5;

/// A cursor over protobuf fields (also reads the collector's remote-read frames).
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, NotScanned> {
        // Most varints here (keys, lengths of labels and samples) fit in one byte.
        if let Some(&b) = self.buf.first()
            && b < 0x80
        {
            self.buf = &self.buf[1..];
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Result<u64, NotScanned> {
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().take(10).enumerate() {
            // The tenth byte holds the 64th bit only: more overflows (prost refuses it).
            if i == 9 && b > 1 {
                return Err(NotScanned);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(NotScanned)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], NotScanned> {
        if n > self.buf.len() {
            return Err(NotScanned);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field: number and wire type.
    #[inline]
    pub(crate) fn key(&mut self) -> Result<(u64, u64), NotScanned> {
        let key = self.varint()?;
        // Field 0 does not exist; key values past u32 are invalid too (prost refuses both).
        if key >> 3 == 0 || key > u64::from(u32::MAX) {
            return Err(NotScanned);
        }
        Ok((key >> 3, key & 7))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], NotScanned> {
        let n = usize::try_from(self.varint()?).map_err(|_| NotScanned)?;
        self.take(n)
    }

    /// Skip a field of a known-safe wire type (no groups).
    pub(crate) fn skip(&mut self, wire: u64) -> Result<(), NotScanned> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => Err(NotScanned),
        }
    }
}

/// Scan a decompressed `WriteRequest`. Gives up (`NotScanned`) once what it read would take
/// more than `max_memory` bytes: a body of tiny items (an empty series is 2 bytes on the wire)
/// must not make it allocate many times the body's size; prost's path then refuses it.
pub fn scan(body: &[u8], max_memory: usize) -> Result<Scanned<'_>, NotScanned> {
    scan_into(body, max_memory, Scanned::default())
}

/// [`scan`] into the tables of `out` (emptied first), so that a caller can keep their
/// allocations from one request to the next.
pub fn scan_into<'a>(
    body: &'a [u8],
    max_memory: usize,
    mut out: Scanned<'a>,
) -> Result<Scanned<'a>, NotScanned> {
    out.series.clear();
    out.labels.clear();
    out.metadata.clear();
    // A series of the usual size is ~300 bytes encoded, a label ~30.
    out.series.reserve(body.len() / 256);
    out.labels.reserve(body.len() / 32);
    // Where the strings of a series' labels are (see `canonical_labels`), reused per series.
    let mut spans: Vec<Span> = Vec::with_capacity(32);
    let mut r = Reader { buf: body };
    while !r.buf.is_empty() {
        match r.key()? {
            (1, LEN) => {
                let encoded = r.bytes()?;
                let series = scan_series(encoded, &mut out.labels, &mut spans)?;
                out.series.push(series);
                let memory = out.series.len() * std::mem::size_of::<SeriesRef<'_>>()
                    + out.labels.len() * std::mem::size_of::<LabelRef<'_>>();
                if memory > max_memory {
                    return Err(NotScanned);
                }
            }
            (3, LEN) => out.metadata.push(r.bytes()?),
            _ => return Err(NotScanned),
        }
    }
    Ok(out)
}

fn scan_series<'a>(
    encoded: &'a [u8],
    labels: &mut Vec<LabelRef<'a>>,
    spans: &mut Vec<Span>,
) -> Result<SeriesRef<'a>, NotScanned> {
    let start = labels.len();
    let mut series = SeriesRef {
        encoded,
        labels: (0, 0),
        samples: 0,
        max_timestamp: i64::MIN,
        plain: true,
        canonical_labels: None,
    };
    // The usual shape first: every label in prost's encoding, then the samples.
    let leading = canonical_labels(encoded, labels, spans);
    let mut canonical = leading > 0;
    let mut r = Reader {
        buf: &encoded[leading..],
    };
    while !r.buf.is_empty() {
        match r.key()? {
            (1, LEN) => match scan_label(r.bytes()?)? {
                Some(l) => {
                    canonical = false;
                    labels.push(l);
                }
                None => {
                    canonical = false;
                    series.plain = false;
                }
            },
            (2, LEN) => match scan_sample(r.bytes()?)? {
                Some(ts) => {
                    series.samples += 1;
                    series.max_timestamp = series.max_timestamp.max(ts);
                }
                None => series.plain = false,
            },
            (_, wire) => {
                series.plain = false;
                r.skip(wire)?;
            }
        }
    }
    let (start, end) = (u32::try_from(start), u32::try_from(labels.len()));
    series.labels = (start.map_err(|_| NotScanned)?, end.map_err(|_| NotScanned)?);
    if canonical && series.plain {
        series.canonical_labels = Some(&encoded[..leading]);
    }
    Ok(series)
}

/// Offsets and lengths of a label's name and value within its series.
type Span = (u32, u32, u32, u32);

/// A length of the fast path: a varint of one byte, or of two in its shortest form (labels
/// up to 16 KiB). Longer or padded lengths are left to the general path.
#[inline(always)]
fn short_len(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let b0 = *buf.get(at)?;
    if b0 < 0x80 {
        return Some((usize::from(b0), at + 1));
    }
    let b1 = *buf.get(at + 1)?;
    if b1 == 0 || b1 >= 0x80 {
        return None;
    }
    Some((usize::from(b0 & 0x7f) | usize::from(b1) << 7, at + 2))
}

/// One label field at `at` in prost's encoding: `0a len 0a n name 12 m value`, both strings
/// non-empty. Returns the name's and value's byte ranges and where the next field starts.
#[inline(always)]
fn canonical_label(buf: &[u8], at: usize) -> Option<(usize, usize, usize, usize, usize)> {
    if *buf.get(at)? != 0x0a {
        return None;
    }
    let (len, body) = short_len(buf, at + 1)?;
    let end = body + len;
    if end > buf.len() || *buf.get(body)? != 0x0a {
        return None;
    }
    let (n, name) = short_len(buf, body + 1)?;
    let key = name + n;
    if n == 0 || key >= end || buf[key] != 0x12 {
        return None;
    }
    let (m, value) = short_len(buf, key + 1)?;
    if m == 0 || value + m != end {
        return None;
    }
    Some((name, n, value, m, end))
}

/// The labels that open a series, when they are in prost's encoding. Pushes them and returns
/// how many bytes they take; 0 (nothing pushed) when the series does not open that way, and
/// the general path reads it. When those bytes (keys, lengths and text) are valid UTF-8 as a
/// whole, as they are whenever every length is under 128, each name and value is a slice of
/// one validated string: UTF-8 is checked once per series rather than once per string.
fn canonical_labels<'a>(
    series: &'a [u8],
    labels: &mut Vec<LabelRef<'a>>,
    spans: &mut Vec<Span>,
) -> usize {
    // One pass over the structure, remembering where the strings are.
    if series.len() > u32::MAX as usize {
        return 0;
    }
    spans.clear();
    let mut end = 0;
    while let Some((name, n, value, m, next)) = canonical_label(series, end) {
        spans.push((name as u32, n as u32, value as u32, m as u32));
        end = next;
    }
    if spans.is_empty() {
        return 0;
    }
    let region = &series[..end];
    let text = simdutf8::basic::from_utf8(region).ok();
    let as_str = |from: u32, len: u32| -> Option<&'a str> {
        let (from, len) = (from as usize, len as usize);
        match text {
            Some(t) => t.get(from..from + len),
            None => simdutf8::basic::from_utf8(&region[from..from + len]).ok(),
        }
    };
    let before = labels.len();
    labels.reserve(spans.len());
    for &(name, n, value, m) in spans.iter() {
        match (as_str(name, n), as_str(value, m)) {
            (Some(name), Some(value)) => labels.push(LabelRef { name, value }),
            // Invalid UTF-8: the general path gives up on it and prost words the refusal.
            _ => {
                labels.truncate(before);
                return 0;
            }
        }
    }
    end
}

/// A label with at most one name and one value field, both UTF-8; `None` for other shapes.
fn scan_label(encoded: &[u8]) -> Result<Option<LabelRef<'_>>, NotScanned> {
    let mut r = Reader { buf: encoded };
    let (mut name, mut value): (Option<&str>, Option<&str>) = (None, None);
    while !r.buf.is_empty() {
        let (field, wire) = r.key()?;
        let slot = match (field, wire) {
            (1, LEN) => &mut name,
            (2, LEN) => &mut value,
            (_, wire) => {
                r.skip(wire)?;
                return Ok(None);
            }
        };
        if slot.is_some() {
            return Ok(None);
        }
        // Invalid UTF-8 is for prost to report.
        *slot = Some(simdutf8::basic::from_utf8(r.bytes()?).map_err(|_| NotScanned)?);
    }
    Ok(Some(LabelRef {
        name: name.unwrap_or(""),
        value: value.unwrap_or(""),
    }))
}

/// A float sample's timestamp; `None` for other shapes.
fn scan_sample(encoded: &[u8]) -> Result<Option<i64>, NotScanned> {
    let mut r = Reader { buf: encoded };
    let (mut value, mut timestamp) = (false, None);
    while !r.buf.is_empty() {
        match r.key()? {
            (1, FIXED64) if !value => {
                r.take(8)?;
                value = true;
            }
            // int64 is a plain varint: negative values take ten bytes.
            (2, VARINT) if timestamp.is_none() => timestamp = Some(r.varint()? as i64),
            (_, wire) => {
                r.skip(wire)?;
                return Ok(None);
            }
        }
    }
    Ok(Some(timestamp.unwrap_or(0)))
}

impl SeriesRef<'_> {
    /// The owned series of a plain one (`labels` from [`Scanned::labels_of`]), without
    /// decoding its labels a second time. `None` if the series is not plain.
    pub fn to_owned(&self, labels: &[LabelRef<'_>]) -> Option<TimeSeries> {
        if !self.plain {
            return None;
        }
        let mut samples = Vec::with_capacity(self.samples as usize);
        let mut r = Reader { buf: self.encoded };
        while !r.buf.is_empty() {
            let (field, _) = r.key().ok()?;
            let bytes = r.bytes().ok()?;
            if field == 2 {
                samples.push(read_sample(bytes)?);
            }
        }
        Some(TimeSeries {
            labels: labels
                .iter()
                .map(|l| Label {
                    name: l.name.to_owned(),
                    value: l.value.to_owned(),
                })
                .collect(),
            samples,
            ..Default::default()
        })
    }
}

/// A float sample of a plain series (fields 1 and 2, each at most once, as scanned).
fn read_sample(encoded: &[u8]) -> Option<Sample> {
    let mut r = Reader { buf: encoded };
    let mut sample = Sample::default();
    while !r.buf.is_empty() {
        match r.key().ok()? {
            (1, FIXED64) => {
                let bytes: [u8; 8] = r.take(8).ok()?.try_into().ok()?;
                sample.value = f64::from_le_bytes(bytes);
            }
            (2, VARINT) => sample.timestamp = r.varint().ok()? as i64,
            _ => return None,
        }
    }
    Some(sample)
}

impl SeriesRef<'_> {
    /// The encoded `TimeSeries` of this plain series with `labels` instead of its own, and
    /// their [`labels_hash`]: the labels encoded as prost does (and hashed from those bytes),
    /// then the series' other fields (its samples) copied as they came. `None` if the series
    /// is not plain.
    pub fn with_labels<L: LabelPair>(&self, labels: &[L]) -> Option<(Vec<u8>, u64)> {
        if !self.plain {
            return None;
        }
        let mut out = Vec::with_capacity(self.encoded.len() + 64);
        for l in labels {
            encode_label(&mut out, l.name(), l.value());
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&out);
        match self.canonical_labels {
            // The labels open the series and nothing else is a label: the rest is samples.
            Some(region) => out.extend_from_slice(&self.encoded[region.len()..]),
            None => {
                let mut r = Reader { buf: self.encoded };
                while !r.buf.is_empty() {
                    let before = r.buf;
                    let (field, wire) = r.key().ok()?;
                    r.skip(wire).ok()?;
                    if field != 1 {
                        out.extend_from_slice(&before[..before.len() - r.buf.len()]);
                    }
                }
            }
        }
        Some((out, hash))
    }
}

/// Append `encoded` (a `TimeSeries` message) to a `WriteRequest` body as field 1.
pub fn push_series(out: &mut Vec<u8>, encoded: &[u8]) {
    out.push(0x0a);
    prost::encoding::encode_varint(encoded.len() as u64, out);
    out.extend_from_slice(encoded);
}

#[cfg(test)]
mod tests;
