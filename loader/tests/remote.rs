//! Record files read from a URL, against a real S3-compatible server on loopback (moto's),
//! read over its plain-HTTP face with range requests. Skipped, saying so, without
//! `moto_server`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uic_loader::remote::Options;
use uic_loader::{convert, Loader, LoaderConfig, RecordFile};

use crate::common::s3::S3;

/// A record file of 400 small JPEGs in 4 classes.
fn record_file(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    crate::common::image_folder(&images, 4, 100);
    let out = dir.join("local.uicr");
    convert::convert(&images, &out, &Default::default(), &|_| {}).unwrap();
    out
}

/// A temporary folder with [`record_file`], its bytes stored as `data/train.uicr`, and that
/// object's URL.
fn served(s3: &S3) -> (tempfile::TempDir, PathBuf, Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let local_path = record_file(dir.path());
    let bytes = std::fs::read(&local_path).unwrap();
    s3.bucket("data");
    s3.put("data", "train.uicr", &bytes);
    let url = s3.http_url("data", "train.uicr");
    (dir, local_path, bytes, url)
}

/// Small chunks (32 KiB), so that the file spans many; the cache in `dir`.
fn options(dir: &Path) -> Options {
    Options {
        cache_dir: dir.join("cache"),
        chunk: 32 << 10,
        in_flight: 4,
        retry_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

fn loader(file: RecordFile) -> Loader {
    let cfg = LoaderConfig {
        batch_size: 16,
        threads: 2,
        size: (24, 24),
        seed: 7,
        ..LoaderConfig::default()
    };
    Loader::new(Arc::new(file), cfg).unwrap()
}

/// Every batch of an epoch: indices, labels and pixels.
type Batches = Vec<(Vec<u32>, Option<Vec<u32>>, Vec<u8>)>;

fn epoch(l: &Loader, order: Vec<usize>) -> uic_loader::Result<Batches> {
    l.epoch(1, order, 0)?
        .map(|b| {
            b.map(|b| {
                (
                    b.indices().to_vec(),
                    b.labels().map(<[u32]>::to_vec),
                    b.pixels(0).to_vec(),
                )
            })
        })
        .collect()
}

fn shuffled(n: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 151) % n).collect()
}

#[test]
fn a_remote_file_reads_as_the_local_one_record_by_record_and_batch_by_batch() {
    let Some(s3) = S3::start("a_remote_file_reads_as_the_local_one") else {
        return;
    };
    let (dir, local_path, bytes, url) = served(&s3);
    let local = RecordFile::open(&local_path).unwrap();
    let n = local.len();
    assert!(
        bytes.len() > 6 * (32 << 10),
        "the file spans several chunks"
    );

    // On demand only (no background fill): each record fetched and checked, then equal.
    let mut o = options(dir.path());
    o.background_fill = false;
    o.cache_dir = dir.path().join("cache-demand");
    let remote = RecordFile::open_url(&url, &o).unwrap();
    assert_eq!(
        (remote.len(), remote.num_classes()),
        (n, local.num_classes())
    );
    assert!(remote.cached_bytes().unwrap() < bytes.len() as u64);
    for i in 0..n {
        remote.fetch(&[i]).unwrap();
        assert_eq!(remote.sample(i), {
            let mut s = local.sample(i);
            s.index = i;
            s
        });
    }

    // The same URL opened again in this process while the first is open (as `uic train`
    // does): shares the entry, no wait.
    let (tx, rx) = std::sync::mpsc::channel();
    let (u, o2) = (url.clone(), o.clone());
    std::thread::spawn(move || tx.send(RecordFile::open_url(&u, &o2).map(|f| f.len())));
    let twice = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a second open does not wait");
    assert_eq!(twice.unwrap(), n);
    drop(remote);

    // The loader: the same batches, from a cold cache with the background fill and from a
    // cold cache without it.
    let want = epoch(&loader(local), shuffled(n)).unwrap();
    assert_eq!(want.len(), n.div_ceil(16));
    for fill in [true, false] {
        let mut o = options(dir.path());
        o.background_fill = fill;
        o.cache_dir = dir.path().join(format!("cache-{fill}"));
        let got = epoch(
            &loader(RecordFile::open_url(&url, &o).unwrap()),
            shuffled(n),
        )
        .unwrap();
        assert!(
            got == want,
            "batches differ from the local file's (fill {fill})"
        );
    }
    // A later run finds the cache whole and fetches nothing.
    let mut o = options(dir.path());
    o.cache_dir = dir.path().join("cache-true");
    let again = RecordFile::open_url(&url, &o).unwrap();
    again.fetch_all().unwrap();
    assert_eq!(again.cached_bytes(), Some(bytes.len() as u64));
}

#[test]
fn a_server_stopped_mid_epoch_is_an_error_naming_the_url_and_a_restart_recovers() {
    let Some(mut s3) = S3::start("a_server_stopped_mid_epoch") else {
        return;
    };
    let (dir, local_path, bytes, url) = served(&s3);
    let mut o = options(dir.path());
    o.background_fill = false;
    let file = RecordFile::open_url(&url, &o).unwrap();
    let n = file.len();
    let l = loader(file);
    // In file order, so that the batches after the first need chunks not yet fetched.
    let mut e = l.epoch(1, (0..n).collect(), 0).unwrap();
    let first = e.next().expect("a first batch");
    assert!(first.is_ok());
    s3.stop();
    let t = Instant::now();
    let rest: Vec<_> = e.by_ref().collect();
    let took = t.elapsed();
    let err = rest
        .iter()
        .find_map(|b| b.as_ref().err())
        .expect("an error, not a short epoch")
        .to_string();
    assert!(
        err.contains(&url) && err.contains("cannot fetch bytes"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
    drop(e);
    drop(l);

    // The server back (moto keeps nothing, so the object is stored again, the same bytes):
    // the same cache serves what it holds and fetches the rest.
    s3.restart();
    s3.bucket("data");
    s3.put("data", "train.uicr", &bytes);
    let file = RecordFile::open_url(&url, &o).unwrap();
    let got = epoch(&loader(file), (0..n).collect()).unwrap();
    let want = epoch(
        &loader(RecordFile::open(&local_path).unwrap()),
        (0..n).collect(),
    )
    .unwrap();
    assert!(got == want);
}

#[test]
fn a_corrupt_record_is_caught_by_its_crc_and_a_torn_cache_chunk_is_fetched_again() {
    let Some(s3) = S3::start("a_corrupt_record_is_caught_by_its_crc") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let local_path = record_file(dir.path());
    let local = RecordFile::open(&local_path).unwrap();
    let bytes = std::fs::read(&local_path).unwrap();
    let e = local.record_entry(5);
    let mut bad = bytes.clone();
    bad[e.offset as usize + e.len as usize / 2] ^= 0x40;
    s3.bucket("data");
    s3.put("data", "bad.uicr", &bad);
    s3.put("data", "good.uicr", &bytes);

    // The object is corrupt: record 5 fails, with its name; the epoch is an error.
    let url = s3.http_url("data", "bad.uicr");
    let f = RecordFile::open_url(&url, &options(dir.path())).unwrap();
    f.fetch(&[4]).unwrap();
    let err = f.fetch(&[5]).unwrap_err().to_string();
    assert!(
        err.contains(&url) && err.contains("record 5") && err.contains("CRC-32C"),
        "{err}"
    );
    let err = epoch(&loader(f), (0..local.len()).collect()).unwrap_err();
    assert!(err.to_string().contains("record 5"), "{err}");

    // The cache's copy is what is wrong (a torn write, a bad disk): fetched again, silently.
    let url = s3.http_url("data", "good.uicr");
    let o = options(dir.path());
    let f = RecordFile::open_url(&url, &o).unwrap();
    f.fetch_all().unwrap();
    drop(f);
    let entry = std::fs::read_dir(&o.cache_dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p.join("meta.json")).is_ok_and(|m| m.contains("good.uicr"))
        })
        .expect("the cache entry");
    let mut cached = std::fs::read(entry.join("data")).unwrap();
    assert_eq!(cached, bytes);
    cached[e.offset as usize + 1] ^= 0x01;
    std::fs::write(entry.join("data"), &cached).unwrap();
    let f = RecordFile::open_url(&url, &o).unwrap();
    f.fetch(&(0..local.len()).collect::<Vec<_>>()).unwrap();
    assert_eq!(f.sample(5).data, local.sample(5).data);
}

#[test]
fn a_missing_object_or_a_file_that_is_not_a_record_file_fails_at_open() {
    let Some(s3) = S3::start("a_missing_object_fails_at_open") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    s3.bucket("data");
    s3.put(
        "data",
        "notes.txt",
        &b"not a record file, but long enough to hold a header. ".repeat(8),
    );
    let o = options(dir.path());
    let url = s3.http_url("data", "missing.uicr");
    let t = Instant::now();
    let err = RecordFile::open_url(&url, &o).unwrap_err().to_string();
    assert!(err.contains(&url), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "a 404 is not retried for long"
    );
    let url = s3.http_url("data", "notes.txt");
    let err = RecordFile::open_url(&url, &o).unwrap_err().to_string();
    assert!(err.contains("bad magic") && err.contains(&url), "{err}");
}

#[test]
fn the_cache_limit_removes_entries_not_in_use_and_refuses_what_cannot_fit() {
    let Some(s3) = S3::start("the_cache_limit") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(record_file(dir.path())).unwrap();
    s3.bucket("data");
    s3.put("data", "a.uicr", &bytes);
    s3.put("data", "b.uicr", &bytes);
    let mut o = options(dir.path());
    o.limit = Some(bytes.len() as u64 * 3 / 2 + (32 << 10));
    let entries = |o: &Options| {
        std::fs::read_dir(&o.cache_dir)
            .unwrap()
            .filter(|d| d.as_ref().unwrap().path().join("meta.json").exists())
            .count()
    };
    let a = RecordFile::open_url(&s3.http_url("data", "a.uicr"), &o).unwrap();
    a.fetch_all().unwrap();
    // `a` in use: `b` does not fit beside it.
    let err = RecordFile::open_url(&s3.http_url("data", "b.uicr"), &o)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cache limit"), "{err}");
    drop(a);
    // `a` closed: removed to make room (once its fill thread has let go of it).
    let t = Instant::now();
    let b = loop {
        match RecordFile::open_url(&s3.http_url("data", "b.uicr"), &o) {
            Ok(b) => break b,
            Err(e) if t.elapsed() < Duration::from_secs(5) => {
                assert!(e.to_string().contains("cache limit"), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    };
    b.fetch_all().unwrap();
    assert_eq!(entries(&o), 1);
    // An object over the limit by itself.
    o.limit = Some(1000);
    let err = RecordFile::open_url(&s3.http_url("data", "a.uicr"), &o)
        .unwrap_err()
        .to_string();
    assert!(err.contains("over the cache limit"), "{err}");
}
