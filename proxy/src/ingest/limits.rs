//! What every remote-write request and series must satisfy before any rule runs. Each failure
//! has a fixed reason (the counter label) and a message for the 400 answer that says what to
//! fix. Storage is shielded from what hurts it: snappy bombs (the declared length is checked
//! before allocating), duplicate label names (Prometheus 2.42 answers 500, which senders retry
//! forever), series without a name, oversized labels, samples far in the future.

use crate::config::ingest::IngestLimits;
use prost::Message;

use super::buffers::recycle;
use crate::remote_write::wire::{self, LabelPair, LabelRef, Scanned, SeriesRef};
use crate::remote_write::{self, CodecError, Label, MetricMetadata, TimeSeries};

/// Why a request or a series was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Fixed, low-cardinality: the `reason` label of the counters.
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// Check the headers a remote-write 1.0 sender sets. A missing `Content-Encoding` is accepted
/// (some clients omit it); another encoding or content type is refused.
pub fn check_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<(), Refusal> {
    let ct = content_type.unwrap_or("application/x-protobuf");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(Refusal::new(
            "content_type",
            format!("Content-Type {ct:?} is not remote write (application/x-protobuf)"),
        ));
    }
    // Remote write 2.0 announces itself with a `proto=` parameter.
    if let Some(proto) = ct
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("proto="))
        && proto != "prometheus.WriteRequest"
    {
        return Err(Refusal::new(
            "content_type",
            format!(
                "remote write message {proto:?} is not supported; send remote write 1.0 (prometheus.WriteRequest)"
            ),
        ));
    }
    match content_encoding {
        None => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(Refusal::new(
            "content_encoding",
            format!("Content-Encoding {e:?} is not supported; remote write uses snappy"),
        )),
    }
}

/// A decoded request. Series in the common shape (labels and float samples) are read in place
/// from the decompressed body; the others are decoded with prost.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// Every series in request order; the `plain` ones are read in place.
    pub series: Vec<SeriesRef<'a>>,
    /// The labels of the plain series (see [`Decoded::labels_of`]).
    labels: Vec<LabelRef<'a>>,
    /// The series that are not plain, decoded by prost, in request order (all of them when
    /// the scanner did not take the body).
    pub owned: Vec<TimeSeries>,
    pub metadata: Vec<MetricMetadata>,
}

impl<'a> Decoded<'a> {
    pub fn labels_of(&self, series: &SeriesRef<'a>) -> &[LabelRef<'a>] {
        &self.labels[series.labels.0 as usize..series.labels.1 as usize]
    }

    /// How many series the request holds.
    pub fn series_count(&self) -> usize {
        // Scanned: `series` lists them all; decoded by prost: `owned` does.
        self.series.len().max(self.owned.len())
    }

    /// The scanner's tables, emptied, for the next request.
    pub fn into_tables(self) -> (Vec<SeriesRef<'static>>, Vec<LabelRef<'static>>) {
        (recycle(self.series), recycle(self.labels))
    }
}

/// Decompress into `out`, refusing bodies that claim more than `max_decompressed` bytes before
/// allocating for them.
pub fn decompress_into(
    body: &[u8],
    max_decompressed: usize,
    out: &mut Vec<u8>,
) -> Result<(), Refusal> {
    if body.is_empty() {
        return Err(Refusal::new("empty_body", "empty body"));
    }
    remote_write::decompress_into(body, max_decompressed, out).map_err(codec_refusal)
}

/// Decompress, refusing bodies that claim more than `max_decompressed` bytes before
/// allocating for them.
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    decompress_into(body, max_decompressed, &mut out)?;
    Ok(out)
}

/// Decode a decompressed `WriteRequest`: scanned in place where possible (into `tables`, whose
/// allocations are reused), with prost where not. Whatever the scanner does not take is
/// decoded by prost as a whole, so malformed bodies get prost's verdict and message. Either way
/// the memory taken is bounded by [`remote_write::MAX_AMPLIFICATION`] times
/// `max_decompressed`.
pub fn decode<'a>(
    raw: &'a [u8],
    max_decompressed: usize,
    tables: Scanned<'a>,
) -> Result<Decoded<'a>, Refusal> {
    let max_memory = max_decompressed.saturating_mul(remote_write::MAX_AMPLIFICATION);
    let scanned = wire::scan_into(raw, max_memory, tables)
        .ok()
        .and_then(|scanned| {
            // Series in other shapes (histograms, exemplars) are decoded into structs: bound them
            // as prost's path does.
            let decodes = !scanned.metadata.is_empty() || scanned.series.iter().any(|s| !s.plain);
            if decodes && remote_write::check_footprint(raw, max_decompressed).is_err() {
                return None;
            }
            let metadata = scanned
                .metadata
                .iter()
                .map(|m| MetricMetadata::decode(*m).ok())
                .collect::<Option<Vec<_>>>()?;
            let owned = scanned
                .series
                .iter()
                .filter(|s| !s.plain)
                .map(|s| TimeSeries::decode(s.encoded).ok())
                .collect::<Option<Vec<_>>>()?;
            Some(Decoded {
                series: scanned.series,
                labels: scanned.labels,
                owned,
                metadata,
            })
        });
    if let Some(decoded) = scanned {
        return Ok(decoded);
    }
    let request =
        remote_write::decode_decompressed(raw, max_decompressed).map_err(codec_refusal)?;
    Ok(Decoded {
        series: Vec::new(),
        labels: Vec::new(),
        owned: request.timeseries,
        metadata: request.metadata,
    })
}

fn codec_refusal(e: CodecError) -> Refusal {
    match e {
        CodecError::TooLarge { claimed, limit } => Refusal::new(
            "too_large",
            format!(
                "decompressed body of {claimed} bytes exceeds the limit of {limit} bytes; send smaller batches"
            ),
        ),
        CodecError::Amplified { .. } => {
            Refusal::new("too_large", format!("{e}; send smaller batches"))
        }
        CodecError::Snappy(e) => Refusal::new("snappy", format!("invalid snappy body: {e}")),
        CodecError::Protobuf(e) if e.to_string().contains("UTF-8") => Refusal::new(
            "invalid_utf8",
            format!("a label name or value is not valid UTF-8: {e}"),
        ),
        CodecError::Protobuf(e) => {
            Refusal::new("protobuf", format!("not a remote-write WriteRequest: {e}"))
        }
    }
}

/// Whether a scanned series passes every check of [`check_series`] as it is: labels sorted
/// and unique, within the limits, named, no sample too far ahead. A series that does not is
/// decoded and given to `check_series`, which sorts it or words the refusal.
pub fn plain_ok(
    labels: &[LabelRef<'_>],
    series: &SeriesRef<'_>,
    limits: &IngestLimits,
    now_ms: i64,
) -> bool {
    let horizon = now_ms.saturating_add(limits.max_future.as_millis() as i64);
    labels.len() <= limits.max_labels_per_series
        && series.max_timestamp <= horizon
        && labels
            .windows(2)
            .all(|w| wire::cmp_short(w[0].name.as_bytes(), w[1].name.as_bytes()).is_lt())
        && labels.iter().all(|l| {
            !l.name.is_empty()
                && l.name.len() <= limits.max_label_name_length
                && l.value.len() <= limits.max_label_value_length
        })
        && !metric_name(labels).is_empty()
}

/// Check one series and sort its labels (the spec requires sorted labels; senders don't
/// always comply).
pub fn check_series(
    series: &mut TimeSeries,
    limits: &IngestLimits,
    now_ms: i64,
) -> Result<(), Refusal> {
    if series.labels.len() > limits.max_labels_per_series {
        return Err(Refusal::new(
            "too_many_labels",
            format!(
                "series {} has {} labels; the limit is {}",
                describe(&series.labels),
                series.labels.len(),
                limits.max_labels_per_series
            ),
        ));
    }
    series.labels.sort_by(|a, b| a.name.cmp(&b.name));
    let mut name = None;
    for (i, l) in series.labels.iter().enumerate() {
        if l.name.is_empty() {
            return Err(Refusal::new(
                "empty_label_name",
                format!(
                    "series {} has a label with an empty name",
                    describe(&series.labels)
                ),
            ));
        }
        if i > 0 && series.labels[i - 1].name == l.name {
            return Err(Refusal::new(
                "duplicate_label",
                format!(
                    "series {} has the label {:?} twice",
                    describe(&series.labels),
                    l.name
                ),
            ));
        }
        if l.name.len() > limits.max_label_name_length {
            return Err(Refusal::new(
                "label_name_too_long",
                format!(
                    "label name {:?}… is {} bytes; the limit is {}",
                    truncate(&l.name, 40),
                    l.name.len(),
                    limits.max_label_name_length
                ),
            ));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err(Refusal::new(
                "label_value_too_long",
                format!(
                    "value of label {:?} in series {} is {} bytes; the limit is {}",
                    l.name,
                    describe(&series.labels),
                    l.value.len(),
                    limits.max_label_value_length
                ),
            ));
        }
        if l.name == "__name__" {
            name = Some(l.value.as_str());
        }
    }
    if name.is_none_or(str::is_empty) {
        return Err(Refusal::new(
            "missing_name",
            format!(
                "series {} has no metric name (__name__)",
                describe(&series.labels)
            ),
        ));
    }
    let horizon = now_ms.saturating_add(limits.max_future.as_millis() as i64);
    let future = series
        .samples
        .iter()
        .map(|s| s.timestamp)
        .chain(series.histograms.iter().map(|h| h.timestamp))
        .find(|t| *t > horizon);
    if let Some(t) = future {
        return Err(Refusal::new(
            "too_far_in_future",
            format!(
                "series {} has a sample {} s ahead of the gateway's clock; the limit is {} s",
                describe(&series.labels),
                (t - now_ms) / 1000,
                limits.max_future.as_secs()
            ),
        ));
    }
    Ok(())
}

/// The metric name of a checked series.
pub fn metric_name<L: LabelPair>(labels: &[L]) -> &str {
    labels
        .iter()
        .find(|l| wire::eq_short(l.name().as_bytes(), b"__name__"))
        .map_or("", |l| l.value())
}

/// `name{a="b",...}` for messages, shortened.
fn describe(labels: &[Label]) -> String {
    let name = metric_name(labels);
    let rest: Vec<String> = labels
        .iter()
        .filter(|l| l.name != "__name__")
        .take(5)
        .map(|l| format!("{}={:?}", truncate(&l.name, 40), truncate(&l.value, 40)))
        .collect();
    let more = if labels.len() > 6 { ",…" } else { "" };
    format!("{}{{{}{more}}}", truncate(name, 80), rest.join(","))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests;
