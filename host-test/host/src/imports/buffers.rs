//! Buffers: bodies, connection data, configurations, callout bodies.

use super::memory::{
    C, R, addr, done, len_u32, read, return_staged, status, take_scratch, write_u32,
};
use crate::abi::{self, Status};

pub(super) fn proxy_get_buffer_bytes(
    mut c: C<'_>,
    t: i32,
    start: i32,
    max: i32,
    ptr_ptr: i32,
    len_ptr: i32,
) -> R {
    let mut staged = take_scratch(&mut c);
    let Some(buffer) = c.data().buffer(t) else {
        return status(Status::BadArgument);
    };
    let start = addr(start);
    if start > buffer.len() && !buffer.is_empty() {
        return status(Status::BadArgument);
    }
    let end = start.saturating_add(addr(max)).min(buffer.len());
    staged.extend_from_slice(buffer.get(start..end).unwrap_or_default());
    return_staged(&mut c, staged, ptr_ptr, len_ptr)
}

pub(super) fn proxy_set_buffer_bytes(
    mut c: C<'_>,
    t: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> R {
    let Some(value) = read(&mut c, ptr, len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let state = c.data_mut();
    if !matches!(
        t,
        abi::buffer::HTTP_REQUEST_BODY
            | abi::buffer::HTTP_RESPONSE_BODY
            | abi::buffer::DOWNSTREAM_DATA
            | abi::buffer::UPSTREAM_DATA
    ) {
        return status(Status::BadArgument);
    }
    let Some(buffer) = state.stream.buffer_mut(t) else {
        return status(Status::BadArgument);
    };
    let (start, size) = (addr(start), addr(size));
    if start == 0 && size == 0 {
        buffer.splice(0..0, value);
    } else if start >= buffer.len() {
        buffer.extend(value);
    } else {
        let end = start.saturating_add(size).min(buffer.len());
        buffer.splice(start..end, value);
    }
    status(Status::Ok)
}

pub(super) fn proxy_get_buffer_status(mut c: C<'_>, t: i32, len_ptr: i32, flags_ptr: i32) -> R {
    let Some(len) = c.data().buffer(t).map(<[u8]>::len) else {
        return status(Status::BadArgument);
    };
    done(write_u32(&mut c, len_ptr, len_u32(len)).and_then(|()| write_u32(&mut c, flags_ptr, 0)))
}
