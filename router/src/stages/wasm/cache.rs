//! The on-disk cache of compiled plugins.
//!
//! Compiling a component is slow (a Python or JavaScript component takes seconds of Cranelift
//! time), so the native code is kept on disk as `<content hash>-<engine hash>.cwasm` under the
//! cache directory and mapped back into memory at the next start (`Component::deserialize_file`).
//! Mapping is what makes a warm start fast: the code and the plugin's initial memory image are
//! paged in from the file on demand instead of being decompressed and copied up front.
//!
//! Invariants: an entry is only ever created by renaming a fully written temporary file into
//! place (never rewritten in place), so a mapped entry never changes under the router; the
//! content hash covers every byte of the plugin file and the engine hash every setting that
//! affects compiled code (wasmtime version included), so a stale entry is never used. A cache
//! that cannot be read or written only costs a compile, with a warning.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Most entries kept; the least recently used beyond it are deleted when a new one is written.
const ENTRIES_MAX: usize = 64;

/// Where compiled plugins are cached: `$EDGE_ROUTER_CACHE_DIR`, else `$XDG_CACHE_HOME` or
/// `~/.cache`, under `edge-router/wasm`.
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("EDGE_ROUTER_CACHE_DIR") {
        return Some(d.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("edge-router").join("wasm"))
}

/// The cache file name for a plugin with these bytes, compiled by `engine`.
fn entry_name(engine: &Engine, bytes: &[u8]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!(
        "{:032x}-{:016x}.cwasm",
        xxhash_rust::xxh3::xxh3_128(bytes),
        h.finish()
    )
}

/// The component compiled from `bytes`: mapped from the cache when there, else compiled (and
/// stored, when `dir` is given). Errors are the compiler's.
pub fn load(engine: &Engine, bytes: &[u8], dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::from_binary(engine, bytes);
    };
    let entry = dir.join(entry_name(engine, bytes));
    if entry.is_file() {
        match map(engine, &entry) {
            Ok(component) => {
                touch(&entry);
                return Ok(component);
            }
            Err(e) => {
                tracing::warn!(
                    "ignoring the unusable compiled-plugin cache entry {}: {e:#}",
                    entry.display()
                );
                let _ = std::fs::remove_file(&entry);
            }
        }
    }
    let component = Component::from_binary(engine, bytes)?;
    if let Err(e) = store(&component, dir, &entry) {
        tracing::warn!(
            "cannot cache the compiled plugin in {}: {e:#}",
            dir.display()
        );
    }
    Ok(component)
}

/// Maps a cache entry.
#[allow(unsafe_code)]
fn map(engine: &Engine, entry: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to hold code that wasmtime produced and to stay
    // unchanged while mapped. Entries are written only by `store` below, from
    // `Component::serialize` of this same engine configuration (the name carries the engine's
    // compatibility hash, and wasmtime re-checks its version and settings in the header), into
    // the user's own cache directory, and only by renaming a complete file into place, so an
    // entry is never modified after it appears.
    unsafe { Component::deserialize_file(engine, entry) }
}

/// Marks an entry as recently used (eviction goes by modification time).
fn touch(entry: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(entry) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Writes `component` to `entry` through a temporary file, then trims the cache.
fn store(component: &Component, dir: &Path, entry: &Path) -> wasmtime::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    std::fs::write(&tmp, &bytes)?;
    if let Err(e) = std::fs::rename(&tmp, entry) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    evict(dir, ENTRIES_MAX);
    Ok(())
}

/// A number unique within the process, for temporary file names.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Deletes the least recently used `.cwasm` entries beyond `keep`.
fn evict(dir: &Path, keep: usize) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = read
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if entries.len() <= keep {
        return;
    }
    entries.sort();
    for (_, path) in &entries[..entries.len() - keep] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component with no imports and no exports.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_second_load_maps_the_entry_written_by_the_first() {
        let engine = crate::stages::wasm::engine().unwrap();
        let dir = tempfile::tempdir().unwrap();
        load(engine, EMPTY, Some(dir.path())).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![entry_name(engine, EMPTY)]);
        // A damaged entry is replaced by a fresh compile, not used.
        let entry = dir.path().join(&names[0]);
        std::fs::write(&entry, b"garbage").unwrap();
        load(engine, EMPTY, Some(dir.path())).unwrap();
        assert_ne!(std::fs::read(&entry).unwrap(), b"garbage");
        // And a good entry is mapped.
        map(engine, &entry).unwrap();
    }

    #[test]
    fn different_bytes_get_different_entries() {
        let engine = crate::stages::wasm::engine().unwrap();
        let other = b"\0asm\x0d\0\x01\0\0\x03\x01\0";
        assert_ne!(entry_name(engine, EMPTY), entry_name(engine, other));
    }

    #[test]
    fn eviction_keeps_the_most_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for i in 0..5u64 {
            let p = dir.path().join(format!("{i}.cwasm"));
            std::fs::write(&p, b"x").unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i))
                .unwrap();
        }
        std::fs::write(dir.path().join("keep.txt"), b"not an entry").unwrap();
        evict(dir.path(), 2);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec!["3.cwasm", "4.cwasm", "keep.txt"]);
    }
}
