//! Streams and local replies: continuing, closing, answering locally.

use super::memory::{C, R, read, read_string, return_bytes, status, write_u32};
use crate::abi::{self, Status};
use crate::outcome::LocalReply;

pub(super) fn proxy_continue_stream(mut c: C<'_>, t: i32) -> R {
    if !(0..=3).contains(&t) {
        return status(Status::BadArgument);
    }
    c.data_mut().stream.continued.push(t);
    status(Status::Ok)
}

pub(super) fn proxy_close_stream(mut c: C<'_>, t: i32) -> R {
    if !(0..=3).contains(&t) {
        return status(Status::BadArgument);
    }
    c.data_mut().stream.closed.push(t);
    status(Status::Ok)
}

pub(super) fn proxy_get_status(mut c: C<'_>, code_ptr: i32, ptr_ptr: i32, len_ptr: i32) -> R {
    if let Err(s) = write_u32(&mut c, code_ptr, 0) {
        return status(s);
    }
    return_bytes(&mut c, b"", ptr_ptr, len_ptr)
}

#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
pub(super) fn proxy_send_local_response(
    mut c: C<'_>,
    code: i32,
    dp: i32,
    dl: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
    grpc: i32,
) -> R {
    let (Some(details), Some(body), Some(headers)) = (
        read_string(&mut c, dp, dl),
        read(&mut c, bp, bl),
        read(&mut c, hp, hl),
    ) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(headers) = abi::deserialize_pairs(&headers) else {
        return status(Status::BadArgument);
    };
    let state = c.data_mut();
    if state.stream.local_reply.is_none() {
        state.stream.local_reply = Some(LocalReply {
            status: u32::from_ne_bytes(code.to_ne_bytes()),
            details,
            body,
            headers: headers
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect(),
            grpc_status: grpc,
        });
    }
    status(Status::Ok)
}
