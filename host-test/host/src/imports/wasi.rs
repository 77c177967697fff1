//! WASI (`wasi_snapshot_preview1`): the handful a Rust reactor imports, deterministic.

use super::memory::{C, R, addr, len_u32, read, write, write_u32, write_u64};
use crate::abi::LogLevel;

pub(super) const ERRNO_SUCCESS: i32 = 0;
pub(super) const ERRNO_BADF: i32 = 8;
pub(super) const ERRNO_FAULT: i32 = 21;
pub(super) const ERRNO_INVAL: i32 = 28;

/// stdout and stderr become log lines (INFO and ERROR), one per line written.
pub(super) fn fd_write(mut c: C<'_>, fd: i32, iovs: i32, count: i32, ret: i32) -> R {
    if fd != 1 && fd != 2 {
        return Ok(ERRNO_BADF);
    }
    let mut bytes = Vec::new();
    for i in 0..addr(count) {
        let at = i
            .checked_mul(8)
            .and_then(|o| addr(iovs).checked_add(o))
            .and_then(|a| i32::try_from(a).ok());
        let Some(iov) = at.and_then(|a| read(&mut c, a, 8)) else {
            return Ok(ERRNO_FAULT);
        };
        let word = |r: std::ops::Range<usize>| {
            iov.get(r)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(i32::from_le_bytes)
        };
        let (Some(p), Some(l)) = (word(0..4), word(4..8)) else {
            return Ok(ERRNO_FAULT);
        };
        let Some(chunk) = read(&mut c, p, l) else {
            return Ok(ERRNO_FAULT);
        };
        bytes.extend(chunk);
    }
    let written = len_u32(bytes.len());
    let state = c.data_mut();
    let (buf, level) = if fd == 1 {
        (&mut state.stdout, LogLevel::Info)
    } else {
        (&mut state.stderr, LogLevel::Error)
    };
    buf.extend(bytes);
    let mut lines = Vec::new();
    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=nl).collect();
        lines.push(String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned());
    }
    for line in lines {
        state.log(level, line);
    }
    match write_u32(&mut c, ret, written) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

pub(super) fn fd_read(_c: C<'_>, _fd: i32, _iovs: i32, _count: i32, _ret: i32) -> R {
    Ok(ERRNO_BADF)
}

pub(super) fn fd_close(_c: C<'_>, _fd: i32) -> R {
    Ok(ERRNO_BADF)
}

pub(super) fn fd_seek(_c: C<'_>, _fd: i32, _offset: i64, _whence: i32, _ret: i32) -> R {
    Ok(ERRNO_BADF)
}

pub(super) fn fd_fdstat_get(_c: C<'_>, _fd: i32, _ret: i32) -> R {
    Ok(ERRNO_BADF)
}

pub(super) fn wasi_zero_pair(c: &mut C<'_>, a: i32, b: i32) -> R {
    match write_u32(c, a, 0).and_then(|()| write_u32(c, b, 0)) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

/// No environment variables.
pub(super) fn environ_get(_c: C<'_>, _environ: i32, _buf: i32) -> R {
    Ok(ERRNO_SUCCESS)
}

pub(super) fn environ_sizes_get(mut c: C<'_>, count: i32, size: i32) -> R {
    wasi_zero_pair(&mut c, count, size)
}

/// No arguments (the spec requires 0/0).
pub(super) fn args_get(_c: C<'_>, _argv: i32, _buf: i32) -> R {
    Ok(ERRNO_SUCCESS)
}

pub(super) fn args_sizes_get(mut c: C<'_>, count: i32, size: i32) -> R {
    wasi_zero_pair(&mut c, count, size)
}

/// Every clock reads the frozen time.
pub(super) fn clock_time_get(mut c: C<'_>, _id: i32, _precision: i64, ret: i32) -> R {
    let now = c.data().settings.now_nanos;
    match write_u64(&mut c, ret, now) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

pub(super) fn clock_res_get(mut c: C<'_>, _id: i32, ret: i32) -> R {
    match write_u64(&mut c, ret, 1) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

/// Seeded pseudo-random bytes; at most 64 KiB a call, as in Envoy.
pub(super) fn random_get(mut c: C<'_>, buf: i32, len: i32) -> R {
    let n = addr(len);
    if n > 64 * 1024 {
        return Ok(ERRNO_INVAL);
    }
    let mut bytes = Vec::with_capacity(n);
    while bytes.len() < n {
        bytes.extend(c.data_mut().next_random().to_le_bytes());
    }
    bytes.truncate(n);
    match write(&mut c, buf, &bytes) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

pub(super) fn sched_yield(_c: C<'_>) -> R {
    Ok(ERRNO_SUCCESS)
}

/// The guest asked to exit: a trap (Envoy never expects a reactor to call it).
pub(super) fn proc_exit(_c: C<'_>, code: i32) -> wasmtime::Result<()> {
    Err(wasmtime::Error::msg(format!("proc_exit({code})")))
}
