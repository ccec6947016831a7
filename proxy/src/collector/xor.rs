//! Prometheus' XOR chunk encoding (`tsdb/chunkenc/xor.go`, the Gorilla format with millisecond
//! timestamps): the decoder the collector runs on every chunk of a streamed remote-read answer,
//! and the encoder the tests, the benches and the simulated remote-read servers build chunks
//! with. No maintained crate reads this exact format, so it is written here.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream (most significant bit first):
//! - sample 0: timestamp as a signed varint, value as 64 raw bits;
//! - sample 1: timestamp delta as an unsigned varint, value XOR-encoded;
//! - sample n ≥ 2: delta-of-delta of the timestamp in one of five buckets (`0`; `10` + 14 bits;
//!   `110` + 17 bits; `1110` + 20 bits; `1111` + 64 bits), value XOR-encoded.
//!
//! A value is XOR-ed with the previous one: `0` = unchanged; `10` + the meaningful bits inside the
//! previous leading/trailing zero window; `11` + 5 bits of leading zeros + 6 bits of meaningful
//! bit count (0 meaning 64) + those bits. Values are handled as raw bits throughout, so NaN
//! payloads (the staleness marker `0x7ff0000000000002` among them) come out exactly as written.
//!
//! The decoder never panics on malformed input: every read is bounds-checked and a chunk that
//! ends early or holds impossible fields is an [`XorError`].

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XorError {
    #[error("XOR chunk of {0} bytes is shorter than its 2-byte header")]
    NoHeader(usize),
    #[error("XOR chunk ends inside sample {sample} of {total}")]
    Truncated { sample: u16, total: u16 },
    #[error("XOR chunk holds a varint longer than 64 bits in sample {0}")]
    Varint(u16),
    #[error(
        "XOR chunk sample {sample} claims {leading} leading zeros and {bits} meaningful bits (over 64)"
    )]
    Window { sample: u16, leading: u8, bits: u8 },
}

/// Reads bits most-significant first from a byte slice, through a 64-bit buffer refilled a
/// word at a time (as Prometheus' `bstreamReader` does): most reads are a shift and a mask.
#[derive(Clone, Copy)]
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load.
    next: usize,
    /// The low `valid` bits are the next bits of the stream, the next one highest.
    buf: u64,
    valid: u32,
}

/// The stream ended: the caller turns it into [`XorError::Truncated`] with the sample number.
struct Eof;

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            next: 0,
            buf: 0,
            valid: 0,
        }
    }

    /// Load whole bytes until at least 57 bits are buffered or the data ends.
    #[inline]
    fn refill(&mut self) {
        if self.valid > 56 {
            return;
        }
        let take = (64 - self.valid) / 8;
        if let Some(word) = self.data.get(self.next..self.next + 8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let word = u64::from_be_bytes(bytes);
            self.buf = if take == 8 {
                word
            } else {
                self.buf << (take * 8) | word >> (64 - take * 8)
            };
            self.next += take as usize;
            self.valid += take * 8;
            return;
        }
        while self.valid <= 56 {
            let Some(&byte) = self.data.get(self.next) else {
                return;
            };
            self.buf = self.buf << 8 | u64::from(byte);
            self.next += 1;
            self.valid += 8;
        }
    }

    /// `n` ≤ 64 bits as the low bits of the result.
    #[inline(always)]
    fn read(&mut self, n: u32) -> Result<u64, Eof> {
        if n == 0 {
            return Ok(0);
        }
        if n > 56 {
            return self.read_long(n);
        }
        if self.valid < n {
            self.refill();
            if self.valid < n {
                return Err(Eof);
            }
        }
        self.valid -= n;
        Ok((self.buf >> self.valid) & ((1u64 << n) - 1))
    }

    /// 57 to 64 bits: the buffer holds at least 57 bits after a refill, so read them in two
    /// parts.
    #[inline(never)]
    fn read_long(&mut self, n: u32) -> Result<u64, Eof> {
        let high = self.read(n - 32)?;
        let low = self.read(32)?;
        Ok(high << 32 | low)
    }

    /// The next `n` ≤ 56 bits without consuming them; `None` when fewer remain.
    fn peek(&mut self, n: u32) -> Option<u64> {
        if self.valid < n {
            self.refill();
            if self.valid < n {
                return None;
            }
        }
        Some((self.buf >> (self.valid - n)) & ((1u64 << n) - 1))
    }

    /// Consume `n` bits that [`BitReader::peek`] saw.
    fn skip(&mut self, n: u32) {
        self.valid -= n;
    }

    fn bit(&mut self) -> Result<bool, Eof> {
        if self.valid == 0 {
            self.refill();
            if self.valid == 0 {
                return Err(Eof);
            }
        }
        self.valid -= 1;
        Ok((self.buf >> self.valid) & 1 == 1)
    }

    /// Go's `binary.ReadUvarint` over bytes read at the current (possibly unaligned) position.
    fn uvarint(&mut self) -> Result<Option<u64>, Eof> {
        let mut value = 0u64;
        for i in 0..10u32 {
            let byte = self.read(8)?;
            if byte < 0x80 {
                if i == 9 && byte > 1 {
                    return Ok(None);
                }
                return Ok(Some(value | byte << (7 * i)));
            }
            value |= (byte & 0x7f) << (7 * i);
        }
        Ok(None)
    }
}

/// The samples of one XOR chunk, in order, as `(timestamp ms, value)`.
pub struct XorIter<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    value: u64,
    delta: u64,
    leading: u8,
    trailing: u8,
    failed: bool,
}

/// Decode `chunk` (the `data` of a remote-read `Chunk` of type XOR).
pub fn decode(chunk: &[u8]) -> Result<XorIter<'_>, XorError> {
    let [a, b, ..] = *chunk else {
        return Err(XorError::NoHeader(chunk.len()));
    };
    Ok(XorIter {
        reader: BitReader::new(&chunk[2..]),
        total: u16::from_be_bytes([a, b]),
        read: 0,
        t: 0,
        value: 0,
        delta: 0,
        leading: 0,
        trailing: 0,
        failed: false,
    })
}

/// Samples of one chunk inside a window, appended by [`decode_window`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub kept: u64,
    /// Decoded and dropped: those before the window, and the first after it (decoding stops
    /// there, timestamps only grow inside a chunk).
    pub outside: u64,
}

/// Decode `chunk`, appending the samples with `start_ms ≤ t ≤ end_ms` to `out` as
/// `sample(t, v)`: the collector's loop over a chunk. Past the first two samples, while at
/// least [`FAST_BITS`] bits are buffered (all but a chunk's last bytes), it runs on a copy of
/// the decoder's state that stays in registers, and cuts the timestamp's bucket prefix and
/// delta-of-delta and the value's control bits from one buffer without a check per field;
/// elsewhere, and for the rare 64-bit delta-of-delta, it takes the iterator's checked step.
/// The tests hold it to the iterator's results, errors included.
pub fn decode_window<S>(
    chunk: &[u8],
    start_ms: i64,
    end_ms: i64,
    out: &mut Vec<S>,
    sample: impl Fn(i64, f64) -> S,
) -> Result<WindowCount, XorError> {
    let mut it = decode(chunk)?;
    let mut count = WindowCount::default();
    let mut place = |t: i64, v: f64, count: &mut WindowCount| {
        if t < start_ms {
            count.outside += 1;
        } else if t > end_ms {
            count.outside += 1;
            return Flow::Stop;
        } else {
            count.kept += 1;
            out.push(sample(t, v));
        }
        Flow::Slow
    };
    loop {
        if it.read >= 2 {
            match it.fast_run(&mut count, &mut place)? {
                Flow::Slow => {}
                Flow::Stop => return Ok(count),
            }
        }
        if it.read >= it.total {
            return Ok(count);
        }
        let (t, v) = it.step()?;
        if let Flow::Stop = place(t, v, &mut count) {
            return Ok(count);
        }
    }
}

/// A value's new window: its leading-zero count and meaningful-bit count (`0` meaning 64),
/// checked; returns the meaningful and trailing bits.
#[inline(always)]
fn value_window(sample: u16, leading: u8, significant: u8) -> Result<(u8, u8), XorError> {
    // 0 meaningful bits can't be written (that is "unchanged"): it stands for 64.
    let significant = if significant == 0 { 64 } else { significant };
    if leading as u32 + significant as u32 > 64 {
        return Err(XorError::Window {
            sample,
            leading,
            bits: significant,
        });
    }
    Ok((significant, 64 - leading - significant))
}

/// Where [`decode_window`] goes on.
enum Flow {
    /// The next sample takes the checked step (or, from `place`, decoding goes on).
    Slow,
    /// Past the window or the chunk: done.
    Stop,
}

/// Bits the fast path needs buffered to cut a sample's fields without checks: the longest
/// common bucket (4 prefix bits and 20 of delta-of-delta) and the value's 13 control bits.
const FAST_BITS: u32 = 4 + 20 + 13;

impl XorIter<'_> {
    /// Samples the header announces.
    pub fn len_announced(&self) -> u16 {
        self.total
    }

    fn truncated(&self) -> XorError {
        XorError::Truncated {
            sample: self.read,
            total: self.total,
        }
    }

    /// Samples past the first two on local copies of the state, handed to `place`, while the
    /// fast path holds (see [`decode_window`]); the state is written back before returning.
    #[inline(always)]
    fn fast_run(
        &mut self,
        count: &mut WindowCount,
        place: &mut impl FnMut(i64, f64, &mut WindowCount) -> Flow,
    ) -> Result<Flow, XorError> {
        let mut r = self.reader;
        let (mut t, mut delta, mut value) = (self.t, self.delta, self.value);
        let (mut leading, mut trailing, mut read) = (self.leading, self.trailing, self.read);
        let total = self.total;
        let flow = loop {
            if read >= total {
                break Ok(Flow::Stop);
            }
            r.refill();
            if r.valid < FAST_BITS {
                break Ok(Flow::Slow);
            }
            // The buffered bits, the next one highest (`valid` ≥ FAST_BITS: the shift is < 64).
            let head = r.buf << (64 - r.valid);
            let ones = head.leading_ones().min(4);
            let dod: i64 = match ones {
                0 => {
                    r.valid -= 1;
                    0
                }
                // Nothing was taken yet: the checked step reads this sample.
                4 => break Ok(Flow::Slow),
                _ => {
                    let size = [0, 14, 17, 20][ones as usize];
                    let mut bits = ((head << (ones + 1)) >> (64 - size)) as i64;
                    r.valid -= ones + 1 + size;
                    // Negative numbers come back as high unsigned numbers.
                    if bits > 1 << (size - 1) {
                        bits -= 1 << size;
                    }
                    bits
                }
            };
            delta = delta.wrapping_add(dod as u64);
            t = t.wrapping_add(delta as i64);
            // At most 24 bits were taken: the value's 13 control bits are still buffered.
            let head = r.buf << (64 - r.valid);
            if head >> 63 == 1 {
                let bits = if (head >> 62) & 1 == 1 {
                    r.valid -= 13;
                    let l = ((head >> 57) & 0x1f) as u8;
                    match value_window(read, l, ((head >> 51) & 0x3f) as u8) {
                        Ok((significant, t)) => {
                            (leading, trailing) = (l, t);
                            significant
                        }
                        Err(e) => break Err(e),
                    }
                } else {
                    r.valid -= 2;
                    64 - leading - trailing
                };
                match r.read(bits as u32) {
                    Ok(d) => value ^= d << trailing,
                    Err(Eof) => {
                        break Err(XorError::Truncated {
                            sample: read,
                            total,
                        });
                    }
                }
            } else {
                r.valid -= 1;
            }
            read += 1;
            if let Flow::Stop = place(t, f64::from_bits(value), count) {
                break Ok(Flow::Stop);
            }
        };
        self.reader = r;
        (self.t, self.delta, self.value) = (t, delta, value);
        (self.leading, self.trailing, self.read) = (leading, trailing, read);
        flow
    }

    /// The next sample, field by field, each read checked against the end of the chunk (the
    /// iterator's path, and [`decode_window`]'s near a chunk's end).
    fn step(&mut self) -> Result<(i64, f64), XorError> {
        match self.read {
            0 => {
                let raw = self
                    .reader
                    .uvarint()
                    .map_err(|_| self.truncated())?
                    .ok_or(XorError::Varint(0))?;
                // Zig-zag, as Go's `binary.ReadVarint`.
                self.t = (raw >> 1) as i64 ^ -((raw & 1) as i64);
                self.value = self.reader.read(64).map_err(|_| self.truncated())?;
            }
            1 => {
                self.delta = self
                    .reader
                    .uvarint()
                    .map_err(|_| self.truncated())?
                    .ok_or(XorError::Varint(1))?;
                self.t = self.t.wrapping_add(self.delta as i64);
                self.read_value()?;
            }
            _ => {
                // The bucket's prefix: up to four 1 bits, ended by a 0 unless there are four.
                let prefix = match self.reader.peek(4) {
                    Some(p) => {
                        let ones = (p << 60).leading_ones().min(4);
                        self.reader.skip(if ones == 4 { 4 } else { ones + 1 });
                        ones
                    }
                    None => {
                        let mut ones = 0u32;
                        while ones < 4 && self.reader.bit().map_err(|_| self.truncated())? {
                            ones += 1;
                        }
                        ones
                    }
                };
                let dod: i64 = match prefix {
                    0 => 0,
                    4 => self.reader.read(64).map_err(|_| self.truncated())? as i64,
                    _ => {
                        let size = [0, 14, 17, 20][prefix as usize];
                        let mut bits = self.reader.read(size).map_err(|_| self.truncated())? as i64;
                        // Negative numbers come back as high unsigned numbers.
                        if bits > 1 << (size - 1) {
                            bits -= 1 << size;
                        }
                        bits
                    }
                };
                self.delta = self.delta.wrapping_add(dod as u64);
                self.t = self.t.wrapping_add(self.delta as i64);
                self.read_value()?;
            }
        }
        self.read += 1;
        Ok((self.t, f64::from_bits(self.value)))
    }

    fn read_value(&mut self) -> Result<(), XorError> {
        // The control bits: `0` unchanged, `10` same window, `11` new window.
        let control = match self.reader.peek(2) {
            Some(0b00 | 0b01) => {
                self.reader.skip(1);
                return Ok(());
            }
            Some(bits) => {
                self.reader.skip(2);
                bits == 0b11
            }
            None => {
                if !self.reader.bit().map_err(|_| self.truncated())? {
                    return Ok(());
                }
                self.reader.bit().map_err(|_| self.truncated())?
            }
        };
        let bits = if control {
            let leading = self.reader.read(5).map_err(|_| self.truncated())? as u8;
            let significant = self.reader.read(6).map_err(|_| self.truncated())? as u8;
            let (significant, trailing) = value_window(self.read, leading, significant)?;
            (self.leading, self.trailing) = (leading, trailing);
            significant
        } else {
            64 - self.leading - self.trailing
        };
        let delta = self
            .reader
            .read(bits as u32)
            .map_err(|_| self.truncated())?;
        self.value ^= delta << self.trailing;
        Ok(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = Result<(i64, f64), XorError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read >= self.total {
            return None;
        }
        let step = self.step();
        self.failed = step.is_err();
        Some(step)
    }
}

/// Writes bits most-significant first.
#[derive(Debug, Default, Clone)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = start a new byte).
    used: u32,
}

impl BitWriter {
    /// The low `n` ≤ 64 bits of `value`, highest first.
    fn write(&mut self, value: u64, n: u32) {
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(left);
            let bits = (value >> (left - take)) & ((1u64 << take) - 1);
            if let Some(last) = self.bytes.last_mut() {
                *last |= (bits as u8) << (free - take);
            }
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }

    fn bit(&mut self, bit: bool) {
        self.write(u64::from(bit), 1);
    }

    fn byte(&mut self, b: u8) {
        self.write(u64::from(b), 8);
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }
}

/// Builds an XOR chunk exactly as Prometheus' `xorAppender` does (tests, benches, simulated
/// servers; the collector itself only decodes).
#[derive(Debug, Clone)]
pub struct XorEncoder {
    out: BitWriter,
    count: u16,
    t: i64,
    value: u64,
    delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        XorEncoder {
            out: BitWriter::default(),
            count: 0,
            t: 0,
            value: 0,
            delta: 0,
            // 0xff: no window yet, the first changed value writes its own.
            leading: 0xff,
            trailing: 0,
        }
    }
}

impl XorEncoder {
    pub fn new() -> XorEncoder {
        XorEncoder::default()
    }

    /// Append a sample; false (and nothing written) once the chunk holds 65,535 samples.
    pub fn append(&mut self, t: i64, v: f64) -> bool {
        if self.count == u16::MAX {
            return false;
        }
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.out.uvarint(((t << 1) ^ (t >> 63)) as u64);
                self.out.write(bits, 64);
            }
            1 => {
                self.delta = t.wrapping_sub(self.t) as u64;
                self.out.uvarint(self.delta);
                self.write_value(bits);
            }
            _ => {
                let delta = t.wrapping_sub(self.t) as u64;
                let dod = delta.wrapping_sub(self.delta) as i64;
                let in_range = |n: u32| -((1i64 << (n - 1)) - 1) <= dod && dod <= 1 << (n - 1);
                if dod == 0 {
                    self.out.bit(false);
                } else if in_range(14) {
                    self.out.write(0b10, 2);
                    self.out.write(dod as u64, 14);
                } else if in_range(17) {
                    self.out.write(0b110, 3);
                    self.out.write(dod as u64, 17);
                } else if in_range(20) {
                    self.out.write(0b1110, 4);
                    self.out.write(dod as u64, 20);
                } else {
                    self.out.write(0b1111, 4);
                    self.out.write(dod as u64, 64);
                }
                self.delta = delta;
                self.write_value(bits);
            }
        }
        self.t = t;
        self.value = bits;
        self.count += 1;
        true
    }

    fn write_value(&mut self, bits: u64) {
        let delta = bits ^ self.value;
        if delta == 0 {
            self.out.bit(false);
            return;
        }
        self.out.bit(true);
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.out.bit(false);
            self.out.write(
                delta >> self.trailing,
                u32::from(64 - self.leading - self.trailing),
            );
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        self.out.bit(true);
        self.out.write(u64::from(leading), 5);
        let significant = 64 - leading - trailing;
        // 64 is written as 0 (6 bits), see the decoder.
        self.out.write(u64::from(significant) & 0x3f, 6);
        self.out.write(delta >> trailing, u32::from(significant));
    }

    /// Samples appended so far.
    pub fn len(&self) -> u16 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The chunk bytes: the sample count, then the bit stream.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.out.bytes.len());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.out.bytes);
        out
    }
}

/// One chunk of `samples` (tests and benches).
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut e = XorEncoder::new();
    for &(t, v) in samples {
        e.append(t, v);
    }
    e.bytes()
}

#[cfg(test)]
mod tests;
