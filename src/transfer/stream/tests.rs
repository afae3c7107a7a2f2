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

/// A stream from `source` into `target`, both sides succeeding.
fn stream_ok(source: &Path, target: &Path) -> (SendReport, ReceiveReport) {
    let (sent, got) = stream(source, target, &ReceiveOptions::default());
    (sent.unwrap(), got.unwrap())
}

#[test]
fn a_target_replaced_under_the_same_path_is_written_whole() {
    let dir = temp_dir("replaced");
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    let all = sparse_source(&src);
    let (first, _) = stream_ok(&src, &dst);
    assert_eq!(std::fs::read(&dst).unwrap(), all);
    // A new file where the target was: same path, same size, nothing in it
    // (as a new volume behind the same device name would be).
    std::fs::remove_file(&dst).unwrap();
    let f = std::fs::File::create(&dst).unwrap();
    f.set_len(all.len() as u64).unwrap();
    drop(f);
    let (sent, got) = stream_ok(&src, &dst);
    assert_eq!(got.chunks_resumed, 0, "the old log was trusted: {got:?}");
    assert_eq!(sent.chunks_held, 0, "{sent:?}");
    assert_eq!(sent.chunks_sent, first.chunks_sent, "{sent:?}");
    assert_eq!(got.digest, digest_bytes(&all));
    assert_eq!(std::fs::read(&dst).unwrap(), all);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_target_written_behind_the_logs_back_is_caught_and_streamed_afresh() {
    let dir = temp_dir("overwritten");
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    let all = sparse_source(&src);
    stream_ok(&src, &dst);
    // The same file (inode, mark), its data changed by something else.
    let f = std::fs::OpenOptions::new().write(true).open(&dst).unwrap();
    f.write_all_at(&[0x5a; 4096], 8 * MIB).unwrap();
    drop(f);
    let (sent, got) = stream_ok(&src, &dst);
    let why = got.restarted.as_deref().unwrap_or_default();
    assert!(
        why.contains("chunk 2 no longer holds") && why.contains("afresh"),
        "{got:?}"
    );
    assert_eq!(got.chunks_resumed, 0, "{got:?}");
    assert_eq!(sent.chunks_held, 0, "{sent:?}");
    assert_eq!(got.digest, digest_bytes(&all));
    assert_eq!(std::fs::read(&dst).unwrap(), all);
    // Untouched, the next run trusts the log again.
    let (sent, got) = stream_ok(&src, &dst);
    assert_eq!((sent.chunks_sent, got.restarted), (0, None));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_spot_check_reads_every_held_chunk_up_to_its_count_else_a_spread() {
    use super::receive::spot_positions;
    assert_eq!(spot_positions(3, 16, 7), vec![0, 1, 2]);
    assert_eq!(spot_positions(0, 16, 7), Vec::<usize>::new());
    for seed in [0, 1, 5, 1000] {
        let p = spot_positions(1000, 16, seed);
        assert_eq!(p.len(), 16);
        assert_eq!((p[0], p[15]), (0, 999));
        assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
    }
}

/// What a receiver answers to `hello` into `target`.
fn receive_hello(target: &Path, hello: &serde_json::Value) -> TransferError {
    let mut input = Vec::new();
    write_magic(&mut input).unwrap();
    write_json(&mut input, kind::HELLO, hello).unwrap();
    let mut output = Vec::new();
    receive(
        target,
        &mut input.as_slice(),
        &mut output,
        &ReceiveOptions {
            state_dir: Some(target.with_extension("record")),
            ..ReceiveOptions::default()
        },
    )
    .unwrap_err()
}

#[test]
fn a_receiver_refuses_hostile_hellos_before_it_sizes_anything() {
    let dir = temp_dir("hostile");
    let chunk = crate::transfer::CHUNK_SIZE;
    let hello = |size: u64, chunk_size: u64, identity: &str| serde_json::json!({"protocol": PROTOCOL, "identity": identity, "size": size, "chunk_size": chunk_size});
    let long = "x".repeat(MAX_IDENTITY + 1);
    for (h, says) in [
        (hello(u64::MAX, chunk, "s"), "more than the"),
        (hello(MAX_IMAGE_SIZE + 1, chunk, "s"), "more than the"),
        (hello(MIB, 1, "s"), "1-byte chunks"),
        (hello(MIB, 0, "s"), "0-byte chunks"),
        (hello(MIB, u64::MAX, "s"), "-byte chunks"),
        (hello(MIB, chunk, &long), "at most 1024"),
        (hello(MIB, chunk, "a\nb"), "control characters"),
        (
            serde_json::json!({"protocol": PROTOCOL, "identity": "s", "size": -1, "chunk_size": chunk}),
            "does not parse",
        ),
    ] {
        let target = dir.join("new");
        let err = receive_hello(&target, &h).to_string();
        assert!(err.contains(says), "{h}: {err}");
        assert!(!target.exists(), "{h}: a target was made");
    }
    // An existing file is neither grown to a sender's size nor truncated.
    let small = dir.join("small");
    std::fs::write(&small, vec![7u8; MIB as usize]).unwrap();
    let err = receive_hello(&small, &hello(1 << 40, chunk, "s")).to_string();
    assert!(
        err.contains("holds 1048576 bytes, the image 1099511627776"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&small).unwrap().len(), MIB);
    let large = dir.join("large");
    std::fs::write(&large, vec![7u8; 3 * MIB as usize]).unwrap();
    let err = receive_hello(&large, &hello(MIB, chunk, "s")).to_string();
    assert!(err.contains("neither truncates nor grows"), "{err}");
    assert_eq!(std::fs::metadata(&large).unwrap().len(), 3 * MIB);
    // An empty one is the image's size after.
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let err = receive_hello(&empty, &hello(5 * MIB, chunk, "s")).to_string();
    assert!(err.contains("ended"), "{err}");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 5 * MIB);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sender_refuses_a_have_list_beyond_its_image() {
    let dir = temp_dir("have");
    let src = dir.join("src");
    std::fs::write(&src, vec![1u8; MIB as usize]).unwrap();
    let mut input = Vec::new();
    write_magic(&mut input).unwrap();
    write_json(
        &mut input,
        kind::READY,
        &Ready {
            protocol: PROTOCOL,
            zeroed: true,
            resumed: 1,
            restarted: None,
        },
    )
    .unwrap();
    let mut have = Vec::new();
    have.extend_from_slice(&(1u64 << 40).to_le_bytes());
    have.extend_from_slice(&[3u8; 32]);
    write_frame(&mut input, kind::HAVE, &have).unwrap();
    let source = FileSource::open(&src).unwrap();
    let err = send(
        &source,
        None,
        &mut input.as_slice(),
        &mut Vec::new(),
        &Options::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("beyond the image"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
