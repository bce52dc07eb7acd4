//! ChaCha8 as `rand_chacha::ChaCha8Rng` runs it (Bernstein's ChaCha, 8 rounds, a 64-bit block
//! counter in state words 12-13 and a 64-bit stream id in words 14-15, each block's 16 output
//! words in order), written out so that the dropout op can draw any stretch of a stream in
//! place, on the CPU here and in `kernels.cu` (the same function) on a GPU: word w of a stream
//! is word w mod 16 of block w / 16, so a mask entry needs nothing but its own position.
//! Checked against rand_chacha itself in `ferbayes-models` (`noise` tests).

/// "expand 32-byte k", the ChaCha constants.
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A stretch of one ChaCha8 stream: the key (the generator's 32-byte seed as 8 little-endian
/// words), the stream id and the position (in 32-bit words) of the stretch's first word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaskStream {
    pub key: [u32; 8],
    pub stream: u64,
    pub word: u128,
}

impl MaskStream {
    /// The key words of a 32-byte seed.
    pub fn key_words(seed: &[u8; 32]) -> [u32; 8] {
        std::array::from_fn(|i| {
            u32::from_le_bytes([
                seed[4 * i],
                seed[4 * i + 1],
                seed[4 * i + 2],
                seed[4 * i + 3],
            ])
        })
    }

    /// Words `i..i + out.len()` of the stretch (word `i` is the stream's word `word + i`).
    pub fn fill(&self, i: u64, out: &mut [u32]) {
        let mut w = self.word.wrapping_add(u128::from(i));
        let mut k = 0;
        while k < out.len() {
            // The counter is 64 bits: positions wrap at 2^68 words, as rand_chacha's do.
            let block = block(&self.key, self.stream, (w / 16) as u64);
            let at = (w % 16) as usize;
            let take = (16 - at).min(out.len() - k);
            out[k..k + take].copy_from_slice(&block[at..at + take]);
            k += take;
            w = w.wrapping_add(take as u128);
        }
    }
}

#[inline(always)]
fn quarter(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

/// The 16 output words of ChaCha8 block `counter` of stream `stream` under `key`.
pub fn block(key: &[u32; 8], stream: u64, counter: u64) -> [u32; 16] {
    block_rounds(key, stream, counter, 4)
}

/// ChaCha with `double_rounds` double rounds (4 for ChaCha8, 10 for ChaCha20).
fn block_rounds(key: &[u32; 8], stream: u64, counter: u64, double_rounds: usize) -> [u32; 16] {
    let mut s = [0u32; 16];
    s[..4].copy_from_slice(&SIGMA);
    s[4..12].copy_from_slice(key);
    s[12] = counter as u32;
    s[13] = (counter >> 32) as u32;
    s[14] = stream as u32;
    s[15] = (stream >> 32) as u32;
    let mut x = s;
    for _ in 0..double_rounds {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    for (o, i) in x.iter_mut().zip(s) {
        *o = o.wrapping_add(i);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439's ChaCha20 block function test vector (section 2.3.2): key 00 01 .. 1f,
    /// counter 1, nonce 00:00:00:09:00:00:00:4a:00:00:00:00 (words 13-15; this layout's 64-bit
    /// counter holds word 13 in its high half). ChaCha8 itself is checked against rand_chacha
    /// in ferbayes-models.
    #[test]
    fn rfc8439_chacha20_block() {
        let key: [u32; 8] = MaskStream::key_words(&std::array::from_fn(|i| i as u8));
        let out = block_rounds(&key, 0x4a00_0000, 1 | (0x0900_0000 << 32), 10);
        let want: [u32; 16] = [
            0xe4e7_f110,
            0x1559_3bd1,
            0x1fdd_0f50,
            0xc471_20a3,
            0xc7f4_d1c7,
            0x0368_c033,
            0x9aaa_2204,
            0x4e6c_d4c3,
            0x4664_82d2,
            0x09aa_9f07,
            0x05d7_c214,
            0xa202_8bd9,
            0xd19c_12b5,
            0xb94e_16de,
            0xe883_d0cb,
            0x4e3c_50a2,
        ];
        assert_eq!(out, want);
    }

    /// `fill` at any offset equals the blocks laid end to end.
    #[test]
    fn fill_is_the_blocks_end_to_end() {
        let key: [u32; 8] = std::array::from_fn(|i| 0x0101_0101 * i as u32 + 7);
        let s = MaskStream {
            key,
            stream: 3,
            word: 16 * 5 + 9,
        };
        let mut all = Vec::new();
        for b in 5..9 {
            all.extend(block(&key, 3, b));
        }
        for (i, len) in [(0u64, 7usize), (3, 16), (7, 30), (0, 55)] {
            let mut out = vec![0; len];
            s.fill(i, &mut out);
            assert_eq!(out, all[9 + i as usize..9 + i as usize + len]);
        }
    }
}
