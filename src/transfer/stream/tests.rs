//! The protocol between a sender and a receiver in one process, over a
//! socket pair: what arrives, what is sent again, what is refused.

use crate::testutil::noise;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::*;
use crate::transfer::digest::digest_bytes;
use crate::transfer::engine::Options;
use crate::transfer::file::{FileSource, Zeroed};
use crate::transfer::TransferError;

const MIB: u64 = 1 << 20;

fn temp_dir(name: &str) -> PathBuf {
    crate::testutil::temp_dir(&format!("stream-{name}"))
}

/// A sparse source of 30 MiB + 1234 bytes: data in chunks 0, 2, 3 (part)
/// and the short last one; returns its whole content.
fn sparse_source(path: &Path) -> Vec<u8> {
    let size = 30 * MIB + 1234;
    let mut all = vec![0u8; size as usize];
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (at, len, seed) in [
        (4096, MIB as usize, 1),
        (8 * MIB, 5 * MIB as usize, 2),
        (size - 1000, 1000, 3),
    ] {
        let d = noise(len, seed);
        f.write_all_at(&d, at).unwrap();
        all[at as usize..at as usize + len].copy_from_slice(&d);
    }
    all
}

/// Runs a sender for `source` and a receiver into `target` against each
/// other.
fn stream(
    source: &Path,
    target: &Path,
    opts: &ReceiveOptions,
) -> (
    Result<SendReport, TransferError>,
    Result<ReceiveReport, TransferError>,
) {
    let (a, b) = UnixStream::pair().unwrap();
    let (target, opts) = (target.to_path_buf(), opts.clone());
    let receiver = std::thread::spawn(move || {
        let mut input = BufReader::new(b.try_clone().unwrap());
        let mut output = BufWriter::new(b);
        let r = receive(&target, &mut input, &mut output, &opts);
        let _ = output.flush();
        r
    });
    let src = FileSource::open(source).unwrap();
    let mut input = BufReader::new(a.try_clone().unwrap());
    let mut output = BufWriter::new(a);
    let sent = send(&src, None, &mut input, &mut output, &Options::default());
    drop(output);
    (sent, receiver.join().unwrap())
}

#[test]
fn a_sparse_file_arrives_equal_with_its_holes_and_only_data_is_sent() {
    let dir = temp_dir("sparse");
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    let all = sparse_source(&src);
    let (sent, got) = stream(&src, &dst, &ReceiveOptions::default());
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(sent.digest, digest_bytes(&all));
    assert_eq!(got.digest, sent.digest);
    assert!(got.equal);
    assert_eq!(std::fs::read(&dst).unwrap(), all);
    // Chunks 0, 2, 3 and 7 hold data; 1, 4, 5, 6 are holes.
    assert_eq!((sent.chunks, sent.chunks_sent, sent.chunks_hole), (8, 4, 4));
    // Zero-detection is by 4 KiB block: the last block of data is the
    // chunk's short tail (1234 bytes), whole.
    assert_eq!(sent.bytes_sent, MIB + 5 * MIB + 1234);
    let blocks = std::fs::metadata(&dst).unwrap().blocks() * 512;
    assert!(blocks < 8 * MIB, "the target allocated {blocks} bytes");
    assert_eq!(got.chunks_zeroed, 0, "a new file needs no zeroing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_run_sends_only_what_changed_and_a_used_target_is_zeroed() {
    let dir = temp_dir("resume");
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    let mut all = sparse_source(&src);
    let (sent, _) = stream(&src, &dst, &ReceiveOptions::default());
    sent.unwrap();
    // One chunk changes, one data chunk becomes a hole.
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.write_all_at(&[0xee; 100], 8 * MIB + 7).unwrap();
    all[8 * MIB as usize + 7..8 * MIB as usize + 107].fill(0xee);
    let punch = crate::transfer::file::FileTarget::open(&src, 30 * MIB + 1234, Zeroed::No);
    punch.unwrap().zero(12 * MIB, MIB).unwrap();
    all[12 * MIB as usize..13 * MIB as usize].fill(0);
    let (sent, got) = stream(&src, &dst, &ReceiveOptions::default());
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(sent.digest, digest_bytes(&all));
    assert_eq!(std::fs::read(&dst).unwrap(), all);
    assert_eq!(sent.chunks_sent, 1, "only chunk 2 changed: {sent:?}");
    assert_eq!(sent.chunks_held, 2, "{sent:?}");
    assert_eq!(got.chunks_zeroed, 1, "chunk 3 became a hole: {got:?}");

    // Another source into the same target: it starts afresh, and the
    // target's old data where the new source has holes is cleared.
    let other = dir.join("other");
    let data = noise(2 * MIB as usize, 9);
    let f = std::fs::File::create(&other).unwrap();
    f.set_len(30 * MIB + 1234).unwrap();
    f.write_all_at(&data, 20 * MIB).unwrap();
    let mut want = vec![0u8; (30 * MIB + 1234) as usize];
    want[20 * MIB as usize..22 * MIB as usize].copy_from_slice(&data);
    let (sent, got) = stream(&other, &dst, &ReceiveOptions::default());
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(got.chunks_resumed, 0, "another source's log is not resumed");
    assert_eq!(sent.digest, digest_bytes(&want));
    assert_eq!(std::fs::read(&dst).unwrap(), want);
    assert!(got.chunks_zeroed >= 3, "{got:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_receiver_refuses_bytes_that_are_not_the_protocol() {
    let dir = temp_dir("garbage");
    let mut input: &[u8] = b"Welcome to convhost!\n";
    let mut output = Vec::new();
    let err = receive(
        &dir.join("dst"),
        &mut input,
        &mut output,
        &ReceiveOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("did not speak the ferry stream protocol")
            && err.to_string().contains("Welcome"),
        "{err}"
    );
    assert!(!dir.join("dst").exists(), "nothing is made for garbage");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_chunk_is_refused_before_it_is_written() {
    let dir = temp_dir("damaged");
    let mut input = Vec::new();
    write_magic(&mut input).unwrap();
    write_json(
        &mut input,
        kind::HELLO,
        &Hello {
            protocol: PROTOCOL,
            identity: "test".into(),
            size: MIB,
            chunk_size: crate::transfer::CHUNK_SIZE,
        },
    )
    .unwrap();
    let mut payload = Vec::new();
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.extend_from_slice(&[1u8; 32]);
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload.extend_from_slice(&4u32.to_le_bytes());
    payload.extend_from_slice(b"abcd");
    write_frame(&mut input, kind::DATA, &payload).unwrap();
    let mut output = Vec::new();
    let err = receive(
        &dir.join("dst"),
        &mut input.as_slice(),
        &mut output,
        &ReceiveOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("chunk 0 arrived damaged"), "{err}");
    assert!(
        std::fs::read(dir.join("dst"))
            .unwrap()
            .iter()
            .all(|b| *b == 0),
        "the damaged data was written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shell_words_survive_quoting() {
    use relay::shell_quote;
    assert_eq!(shell_quote("/dev/vdb"), "/dev/vdb");
    assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    assert_eq!(shell_quote(""), "''");
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("printf %s {}", shell_quote("x $HOME `id` 'q'\n")),
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"x $HOME `id` 'q'\n");
}
