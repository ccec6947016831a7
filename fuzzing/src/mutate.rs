//! Deterministic mutations for the stable in-suite run: bit flips, byte inserts and deletes,
//! splices with another seed, interesting bytes — libFuzzer's cheapest mutators, driven by a
//! seeded xorshift generator so every run (and every failure) is reproducible.

/// xorshift64*: small, seeded, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"{",
    b"}",
    b"(",
    b")",
    b"[",
    b"]",
    b"\"",
    b"`",
    b"\\",
    b"=~",
    b"!~",
    b" or ",
    b" and ",
    b"@",
    b"offset",
    b":",
    b"\n",
    b"- ",
    b"---\n",
    b"{{",
    b"$1",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80",
    b"9999999999999999999",
    b"-1",
    b"NaN",
    b"Inf",
];

/// One to four mutations of `seed`; `other` is spliced in (another seed of the same target).
pub fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(out.len() + 1);
                out.insert(i, rng.next_u64() as u8);
            }
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                let n = 1 + rng.below((out.len() - i).min(16));
                out.drain(i..i + n);
            }
            3 if !other.is_empty() => {
                // Splice: a prefix of this input, then a suffix of the other.
                let cut = rng.below(out.len() + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            4 => {
                let i = rng.below(out.len() + 1);
                let word = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(i..i, word.iter().copied());
            }
            5 if !out.is_empty() => {
                // Duplicate a chunk (nesting, repeated documents).
                let i = rng.below(out.len());
                let n = 1 + rng.below((out.len() - i).min(64));
                let chunk = out[i..i + n].to_vec();
                out.splice(i..i, chunk);
            }
            _ if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next_u64() as u8;
            }
            _ => out.push(rng.next_u64() as u8),
        }
    }
    out
}
