//! Properties and foreign functions.

use super::memory::{C, R, guest, read, return_staged, slice, status, take_scratch};
use crate::abi::Status;

pub(super) fn proxy_get_property(mut c: C<'_>, pp: i32, pl: i32, ptr_ptr: i32, len_ptr: i32) -> R {
    let mut staged = take_scratch(&mut c);
    let Some((data, state)) = guest(&mut c) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(path) = slice(data, pp, pl) else {
        return status(Status::InvalidMemoryAccess);
    };
    match state.property(path) {
        Some(v) => {
            staged.extend_from_slice(v);
            return_staged(&mut c, staged, ptr_ptr, len_ptr)
        }
        None => {
            c.data_mut().scratch = staged;
            status(Status::NotFound)
        }
    }
}

pub(super) fn proxy_set_property(mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32) -> R {
    let (Some(path), Some(value)) = (read(&mut c, pp, pl), read(&mut c, vp, vl)) else {
        return status(Status::InvalidMemoryAccess);
    };
    c.data_mut().stream.properties.set(&path, value);
    status(Status::Ok)
}

pub(super) fn proxy_call_foreign_function(
    _c: C<'_>,
    _np: i32,
    _nl: i32,
    _ap: i32,
    _al: i32,
    _ptr_ptr: i32,
    _len_ptr: i32,
) -> R {
    status(Status::NotFound)
}
