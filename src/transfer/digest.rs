//! The image digest ferry and the rendered scripts compute alike.
//!
//! Definition: cut the image's content (holes read as zeros) into chunks of
//! [`CHUNK_SIZE`] bytes (4 MiB), the last one shorter when the size is not a
//! multiple; take each chunk's SHA-256 as 64 lowercase hex digits followed by
//! a newline; the digest is the SHA-256, in lowercase hex, of those lines in
//! chunk order. An empty image has no chunks: its digest is SHA-256 of
//! nothing. A chunk of zeros hashes to a constant ([`ZERO_CHUNK`]), so holes
//! cost no reading and no hashing, and each chunk's hash stands alone, which
//! is what makes copies resumable chunk by chunk.
//!
//! In a shell, with coreutils:
//!
//! ```sh
//! rbd export --no-progress POOL/IMAGE@SNAP - |
//!   split -b 4M --filter sha256sum | cut -c1-64 | sha256sum | cut -c1-64
//! ```
//!
//! (`split` runs one `sha256sum` per 4 MiB piece, one after the other, each
//! printing `<hex>  -`; `cut` keeps the hex and its newline.)

use sha2::{Digest as _, Sha256};

/// Bytes per chunk: 4 MiB, `split -b 4M`. RBD's default object size, so a
/// chunk is one object of a default image.
pub const CHUNK_SIZE: u64 = 4 << 20;

/// The SHA-256 of one chunk.
pub type ChunkHash = [u8; 32];

/// SHA-256 of [`CHUNK_SIZE`] zero bytes: the hash of every full hole chunk
/// (`head -c 4194304 /dev/zero | sha256sum`).
pub const ZERO_CHUNK: ChunkHash =
    from_hex("bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8");

/// How many chunks an image of `size` bytes has.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE)
}

/// The length of chunk `index` of an image of `size` bytes.
pub fn chunk_len(size: u64, index: u64) -> usize {
    (size - index * CHUNK_SIZE).min(CHUNK_SIZE) as usize
}

/// SHA-256 of one chunk's bytes.
pub fn chunk_hash(data: &[u8]) -> ChunkHash {
    Sha256::digest(data).into()
}

/// The hash of a chunk of `len` zero bytes (a hole): the constant for a full
/// chunk, computed once for the short last one.
pub fn zero_hash(len: usize) -> ChunkHash {
    if len as u64 == CHUNK_SIZE {
        ZERO_CHUNK
    } else {
        chunk_hash(&vec![0u8; len])
    }
}

/// Builds an image digest from its chunk hashes, fed in chunk order.
#[derive(Clone, Default)]
pub struct ImageDigest {
    outer: Sha256,
    chunks: u64,
}

impl ImageDigest {
    /// A digest with no chunks yet.
    pub fn new() -> ImageDigest {
        ImageDigest::default()
    }

    /// Adds the next chunk's hash.
    pub fn push(&mut self, hash: &ChunkHash) {
        let mut line = [b'\n'; 65];
        hex_into(hash, &mut line[..64]);
        self.outer.update(line);
        self.chunks += 1;
    }

    /// How many chunk hashes went in.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// The digest, as 64 lowercase hex digits.
    pub fn finish(self) -> String {
        to_hex(&self.outer.finalize().into())
    }
}

/// Computes the digest of bytes written to it in order (a download, a
/// stream); `finish` gives the digest and the byte count.
#[derive(Clone, Default)]
pub struct DigestWriter {
    image: ImageDigest,
    chunk: Sha256,
    in_chunk: u64,
    total: u64,
}

impl DigestWriter {
    /// A writer that has seen nothing yet.
    pub fn new() -> DigestWriter {
        DigestWriter::default()
    }

    /// The digest of everything written, and how many bytes that was.
    pub fn finish(mut self) -> (String, u64) {
        if self.in_chunk > 0 {
            let h: ChunkHash = self.chunk.finalize_reset().into();
            self.image.push(&h);
        }
        (self.image.finish(), self.total)
    }
}

impl std::io::Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = rest.len().min((CHUNK_SIZE - self.in_chunk) as usize);
            self.chunk.update(&rest[..n]);
            self.in_chunk += n as u64;
            rest = &rest[n..];
            if self.in_chunk == CHUNK_SIZE {
                let h: ChunkHash = self.chunk.finalize_reset().into();
                self.image.push(&h);
                self.in_chunk = 0;
            }
        }
        self.total += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The digest of an image whose whole content is `data` (tests, downloads).
pub fn digest_bytes(data: &[u8]) -> String {
    let mut d = ImageDigest::new();
    for chunk in data.chunks(CHUNK_SIZE as usize) {
        d.push(&chunk_hash(chunk));
    }
    d.finish()
}

/// Whether `text` looks like a digest (64 lowercase hex digits).
pub fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex of a hash.
pub fn to_hex(hash: &ChunkHash) -> String {
    let mut out = [0u8; 64];
    hex_into(hash, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_into(hash: &ChunkHash, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in hash.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
}

const fn from_hex(text: &str) -> ChunkHash {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let t = text.as_bytes();
    assert!(t.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(t[2 * i]) << 4 | nibble(t[2 * i + 1]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Runs the documented shell pipeline (minus `rbd export`) over `data`.
    fn shell_digest(data: &[u8]) -> String {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "split -b 4M --filter sha256sum | cut -c1-64 | sha256sum | cut -c1-64",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn zero_chunk_constant_is_the_hash_of_a_zero_chunk() {
        assert_eq!(ZERO_CHUNK, chunk_hash(&vec![0u8; CHUNK_SIZE as usize]));
        assert_eq!(zero_hash(4096), chunk_hash(&[0u8; 4096]));
    }

    #[test]
    fn shell_pipeline_computes_the_same_digest() {
        // Short last chunk, holes (zeros) in the middle, exact multiple, one
        // short chunk, and nothing at all.
        let mut odd = noise(10 * (1 << 20) + 12345, 7);
        odd[4 << 20..(8 << 20)].fill(0);
        for data in [odd, noise(8 << 20, 3), noise(1000, 5), Vec::new()] {
            assert_eq!(
                digest_bytes(&data),
                shell_digest(&data),
                "{} bytes",
                data.len()
            );
        }
    }

    #[test]
    fn a_stream_written_in_odd_pieces_has_the_same_digest() {
        let data = noise(9 * (1 << 20) + 77, 11);
        let mut w = DigestWriter::new();
        for piece in data.chunks(1_000_003) {
            w.write_all(piece).unwrap();
        }
        assert_eq!(w.finish(), (digest_bytes(&data), data.len() as u64));
        assert_eq!(DigestWriter::new().finish().0, digest_bytes(&[]));
    }

    #[test]
    fn empty_image_digest_is_sha256_of_nothing() {
        assert_eq!(
            digest_bytes(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chunk_arithmetic_handles_short_last_chunks() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_SIZE), 1);
        assert_eq!(chunk_count(CHUNK_SIZE + 1), 2);
        assert_eq!(chunk_len(CHUNK_SIZE + 1, 1), 1);
        assert_eq!(chunk_len(3 * CHUNK_SIZE, 2), CHUNK_SIZE as usize);
    }

    #[test]
    fn digests_are_recognised() {
        assert!(is_digest(&digest_bytes(b"x")));
        assert!(!is_digest("yes"));
        assert!(!is_digest(&"A".repeat(64)));
    }

    /// SHA-256 speed of one core, as the engine uses it (4 MiB at a time),
    /// and whether the CPU's SHA extensions are there for `sha2` to use.
    /// `cargo test --release --lib -- --ignored --nocapture hash_speed`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn hash_speed_per_core() {
        #[cfg(target_arch = "x86_64")]
        println!("sha_ni: {}", std::arch::is_x86_feature_detected!("sha"));
        let data = noise(CHUNK_SIZE as usize, 9);
        let rounds = 256;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(chunk_hash(std::hint::black_box(&data)));
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "sha256: {:.0} MB/s on one core ({rounds} x 4 MiB in {secs:.2} s)",
            rounds as f64 * CHUNK_SIZE as f64 / secs / 1e6
        );
    }
}
