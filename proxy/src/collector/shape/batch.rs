//! A batch of shaped series ([`Batch`]), ready to encode: each series' labels already in their
//! remote-write encoding (written once, when the series was shaped, and hashed from those
//! bytes), one buffer for the whole batch, and the samples per series.

use std::ops::Range;

use prost::Message;

use crate::remote_write::{Sample, TimeSeries};

/// Shaped series of one remote-write request.
#[derive(Debug, Default)]
pub struct Batch {
    /// Every series' labels as `TimeSeries` field 1 entries (see `remote_write::wire::encode_label`).
    pub(super) labels: Vec<u8>,
    pub(super) series: Vec<BatchSeries>,
}

#[derive(Debug)]
pub(super) struct BatchSeries {
    /// This series' encoded labels in [`Batch::labels`].
    pub labels: Range<usize>,
    pub samples: Vec<Sample>,
}

impl Batch {
    pub(super) fn with_capacity(series: usize, label_bytes: usize) -> Batch {
        Batch {
            labels: Vec::with_capacity(label_bytes),
            series: Vec::with_capacity(series),
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Empty, keeping the buffers.
    pub(super) fn clear(&mut self) {
        self.labels.clear();
        self.series.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    /// The snappy-compressed `WriteRequest` of the batch: the same bytes as
    /// `remote_write::encode_series` of [`Batch::to_series`], without decoding the labels.
    pub fn encode(&self) -> Vec<u8> {
        let samples = self.samples();
        // A float sample is at most 2 + 9 + 11 bytes; a series' own key and length at most 6.
        let mut raw = Vec::with_capacity(self.labels.len() + samples * 22 + self.len() * 6);
        for s in &self.series {
            let labels = &self.labels[s.labels.clone()];
            let len = labels.len()
                + s.samples
                    .iter()
                    .map(|x| prost::encoding::message::encoded_len(2, x))
                    .sum::<usize>();
            // `WriteRequest.timeseries` is field 1, `TimeSeries.samples` field 2.
            raw.push(0x0a);
            prost::encoding::encode_varint(len as u64, &mut raw);
            raw.extend_from_slice(labels);
            for x in &s.samples {
                prost::encoding::message::encode(2, x, &mut raw);
            }
        }
        // Compressing an in-memory buffer only fails past snappy's 4 GiB block limit.
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .unwrap_or_default()
    }

    /// The series as owned messages (the Pushgateway's text format and the tests read them).
    pub fn to_series(&self) -> Vec<TimeSeries> {
        self.series
            .iter()
            .map(|s| {
                // The bytes were encoded from valid labels by this process: they decode.
                let labels = TimeSeries::decode(&self.labels[s.labels.clone()])
                    .map(|t| t.labels)
                    .unwrap_or_default();
                TimeSeries {
                    labels,
                    samples: s.samples.clone(),
                    ..Default::default()
                }
            })
            .collect()
    }
}
