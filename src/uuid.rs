//! Random (version 4) UUIDs in their 36-character text form, as the legacy `uuid.uuid4()` made:
//! the `getrandom` crate reads the system's CSPRNG on every platform it supports (a failure is an
//! error, never a panic), the `uuid` crate sets the version bits and formats.
//!
//! Random bytes are read for several ids at a time (one system call per 16 ids instead of one per
//! id) into a per-thread buffer. The buffer is thrown away in the child of a fork: a child and
//! its parent handing out the same bytes would make the same ids.

use std::cell::RefCell;

use crate::error::{Error, Result};

const IDS_PER_READ: usize = 16;

struct Buffered {
    bytes: [u8; 16 * IDS_PER_READ],
    /// Ids still unused at the end of `bytes`.
    left: usize,
    /// `process::fork_count()` when the bytes were read.
    forks: u64,
}

thread_local! {
    static RANDOM: RefCell<Buffered> = const { RefCell::new(Buffered { bytes: [0; 16 * IDS_PER_READ], left: 0, forks: 0 }) };
}

fn random_16() -> Result<[u8; 16]> {
    RANDOM.with(|cell| {
        let mut buf = cell.borrow_mut();
        let forks = crate::process::fork_count();
        if buf.left == 0 || buf.forks != forks {
            getrandom::fill(&mut buf.bytes).map_err(|e| Error::internal(format!("cannot read random bytes for an id: {e}")))?;
            buf.left = IDS_PER_READ;
            buf.forks = forks;
        }
        buf.left -= 1;
        let at = buf.left * 16;
        let mut out = [0u8; 16];
        out.copy_from_slice(&buf.bytes[at..at + 16]);
        // Used bytes do not stay in memory.
        buf.bytes[at..at + 16].fill(0);
        Ok(out)
    })
}

/// A new random UUID.
pub fn new_v4() -> Result<String> {
    Ok(uuid::Builder::from_random_bytes(random_16()?).into_uuid().hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_v4_and_distinct() {
        let ids: Vec<String> = (0..100).map(|_| super::new_v4().unwrap()).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let a = &ids[0];
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(*a, a.to_lowercase());
    }

    /// A child of fork() must not hand out the ids its parent's buffer still holds.
    #[test]
    fn a_forked_child_makes_other_ids_than_its_parent() {
        let _ = super::new_v4().unwrap(); // the buffer now holds 15 more ids
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child makes one id, writes it to a pipe and exits; it allocates, which
        // glibc's fork() keeps usable in the child (it resets the allocator's locks there).
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            let id = super::new_v4().unwrap_or_default();
            unsafe {
                libc::write(fds[1], id.as_ptr().cast(), id.len());
                libc::_exit(0)
            };
        }
        // The parent keeps no write end: a child that dies without writing ends the read.
        unsafe { libc::close(fds[1]) };
        let parent_next = super::new_v4().unwrap();
        let mut got = [0u8; 36];
        let n = unsafe { libc::read(fds[0], got.as_mut_ptr().cast(), 36) };
        let mut status = 0;
        unsafe {
            libc::close(fds[0]);
            libc::waitpid(child, &mut status, 0);
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(n, 36);
        assert_ne!(std::str::from_utf8(&got).unwrap(), parent_next);
    }
}
