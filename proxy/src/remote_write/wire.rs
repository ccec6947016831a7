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

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    fn varint(&mut self) -> Result<u64, NotScanned> {
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

    fn take(&mut self, n: usize) -> Result<&'a [u8], NotScanned> {
        if n > self.buf.len() {
            return Err(NotScanned);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field: number and wire type.
    fn key(&mut self) -> Result<(u64, u64), NotScanned> {
        let key = self.varint()?;
        // Field 0 does not exist; key values past u32 are invalid too (prost refuses both).
        if key >> 3 == 0 || key > u64::from(u32::MAX) {
            return Err(NotScanned);
        }
        Ok((key >> 3, key & 7))
    }

    fn bytes(&mut self) -> Result<&'a [u8], NotScanned> {
        let n = usize::try_from(self.varint()?).map_err(|_| NotScanned)?;
        self.take(n)
    }

    /// Skip a field of a known-safe wire type (no groups).
    fn skip(&mut self, wire: u64) -> Result<(), NotScanned> {
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
    let mut out = Scanned {
        // A series of the usual size is ~300 bytes encoded.
        series: Vec::with_capacity(body.len() / 256),
        labels: Vec::with_capacity(body.len() / 24),
        metadata: Vec::new(),
    };
    let mut r = Reader { buf: body };
    while !r.buf.is_empty() {
        match r.key()? {
            (1, LEN) => {
                let encoded = r.bytes()?;
                let series = scan_series(encoded, &mut out.labels)?;
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
) -> Result<SeriesRef<'a>, NotScanned> {
    let start = labels.len();
    let mut series = SeriesRef {
        encoded,
        labels: (0, 0),
        samples: 0,
        max_timestamp: i64::MIN,
        plain: true,
    };
    let text = leading_labels_text(encoded);
    let mut r = Reader { buf: encoded };
    while !r.buf.is_empty() {
        match r.key()? {
            (1, LEN) => match scan_label(r.bytes()?, encoded, text)? {
                Some(l) => labels.push(l),
                None => series.plain = false,
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
    Ok(series)
}

/// The labels that open a series (they usually come first), as text when all their bytes are
/// UTF-8: then each name and value is a slice of it, validated once per series rather than
/// once per string. Keys and short lengths are ASCII, so this holds for labels under 128 bytes.
fn leading_labels_text(series: &[u8]) -> Option<&str> {
    let mut r = Reader { buf: series };
    while let Some(&0x0a) = r.buf.first() {
        r.varint().ok()?;
        r.bytes().ok()?;
    }
    let end = series.len() - r.buf.len();
    std::str::from_utf8(&series[..end]).ok()
}

/// A label with at most one name and one value field, both UTF-8; `None` for other shapes.
/// `series` holds `encoded`; `text`, when set, is a validated prefix of `series`.
fn scan_label<'a>(
    encoded: &'a [u8],
    series: &'a [u8],
    text: Option<&'a str>,
) -> Result<Option<LabelRef<'a>>, NotScanned> {
    let as_str = |bytes: &'a [u8]| -> Result<&'a str, NotScanned> {
        let start = bytes.as_ptr() as usize - series.as_ptr() as usize;
        match text.and_then(|t| t.get(start..start + bytes.len())) {
            Some(s) => Ok(s),
            // Invalid UTF-8 is for prost to report.
            None => std::str::from_utf8(bytes).map_err(|_| NotScanned),
        }
    };
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
        *slot = Some(as_str(r.bytes()?)?);
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

/// Append `encoded` (a `TimeSeries` message) to a `WriteRequest` body as field 1.
pub fn push_series(out: &mut Vec<u8>, encoded: &[u8]) {
    out.push(0x0a);
    prost::encoding::encode_varint(encoded.len() as u64, out);
    out.extend_from_slice(encoded);
}

#[cfg(test)]
mod tests;
