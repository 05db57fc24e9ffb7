//! Uploading a finished record file: a multipart upload, so the object appears only whole.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use object_store::{ObjectStoreExt, PutPayload};

use super::{one_line, runtime, store_for, Options};
use crate::error::{Error, Result};

/// Bytes per part (S3 takes 5 MiB to 5 GiB, all but the last at least 5 MiB).
const PART: usize = 16 << 20;

/// Uploads the local file `local` to `url` with a multipart upload: several parts in
/// flight, completed only after every part is stored, aborted on any failure, so the
/// object is never seen half-written. Returns the bytes uploaded.
///
/// # Errors
/// [`Error::Remote`] naming the URL and what failed; [`Error::Io`] if `local` cannot be
/// read.
pub fn upload(local: &Path, url: &str, opts: &Options) -> Result<u64> {
    let (store, location) = store_for(url, opts)?;
    let rt = runtime()?;
    let fail = |what: &str, e: &dyn std::error::Error| Error::Remote {
        url: url.to_string(),
        reason: format!("{what}: {}", one_line(e)),
    };
    let mut file = File::open(local).map_err(|source| Error::Io {
        op: "cannot open",
        path: local.to_path_buf(),
        source,
    })?;
    rt.block_on(async {
        let mut up = store
            .put_multipart(&location)
            .await
            .map_err(|e| fail("cannot start the upload", &e))?;
        let mut pending = VecDeque::new();
        let mut sent = 0u64;
        let parts = async {
            loop {
                let mut buf = vec![0u8; PART];
                let mut n = 0;
                while n < PART {
                    match file.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            return Err(Error::Io {
                                op: "cannot read",
                                path: local.to_path_buf(),
                                source,
                            })
                        }
                    }
                }
                if n == 0 && sent > 0 {
                    break;
                }
                buf.truncate(n);
                sent += n as u64;
                pending.push_back(up.put_part(PutPayload::from(buf)));
                if pending.len() >= opts.in_flight.clamp(1, 4) {
                    let p = pending.pop_front().expect("not empty");
                    p.await.map_err(|e| fail("cannot upload a part", &e))?;
                }
                if n < PART {
                    break;
                }
            }
            while let Some(p) = pending.pop_front() {
                p.await.map_err(|e| fail("cannot upload a part", &e))?;
            }
            Ok(())
        }
        .await;
        let done = match parts {
            Ok(()) => up
                .complete()
                .await
                .map(|_| ())
                .map_err(|e| fail("cannot complete the upload", &e)),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            if let Err(a) = up.abort().await {
                tracing::warn!("could not abort the upload to {url}: {}", one_line(&a));
            }
            return Err(e);
        }
        Ok(sent)
    })
}
