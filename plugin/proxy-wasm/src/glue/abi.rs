//! ABI imports the SDK's wrappers make costlier than needed (or cannot express):
//! `proxy_send_local_response` with response code details, which the SDK's
//! `send_http_response` leaves empty; `proxy_get_property` with a pre-serialised path (the
//! SDK's `get_property` copies the path and serialises it again on every call, and panics on
//! an unexpected status); `proxy_get_header_map_pairs` handing back the host's buffer as is
//! (the SDK's `get_map_bytes` copies every pair into a `String` and a `Vec`, and panics on
//! any status but OK); `proxy_set_property` and `proxy_continue_stream`, whose SDK wrappers
//! panic on any status but OK.

use std::ptr::null_mut;

/// `proxy_status_t` OK.
const OK: u32 = 0;
/// `proxy_status_t` NOT_FOUND.
const NOT_FOUND: u32 = 1;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// Sends a local reply; returns the host's status (0 = OK).
pub fn send_local_response(status: u32, details: &str, body: &[u8], headers: &[u8]) -> u32 {
    // SAFETY: each pointer/length pair describes a live slice for the whole call; the host
    // copies the bytes and keeps no pointer. -1: not a gRPC reply.
    unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    }
}

/// Resumes a paused stream (`proxy_continue_stream`); returns the host's status (0 = OK).
/// The SDK's `resume_*` panic on any other status, and Envoy answers `Unimplemented` for a
/// network filter's upstream direction.
pub fn continue_stream(stream_type: u32) -> u32 {
    // SAFETY: no pointers; the host reads the integer.
    unsafe { proxy_continue_stream(stream_type) }
}

/// Sets a property by its NUL-joined path; returns the host's status (0 = OK). The SDK's
/// `set_property` panics on any other status.
pub fn set_property(path: &[u8], value: &[u8]) -> u32 {
    // SAFETY: both pointer/length pairs describe live slices for the whole call; the host
    // copies the bytes.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) }
}

/// Sets a header of a map (replacing any value); returns the host's status (0 = OK).
pub fn replace_header(map_type: u32, key: &str, value: &str) -> u32 {
    // SAFETY: both pointer/length pairs describe live slices for the whole call; the host
    // copies the bytes.
    unsafe {
        proxy_replace_header_map_value(
            map_type,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        )
    }
}

/// Takes ownership of a buffer the host returned: `None` when it returned none.
///
/// # Safety
/// `data`, when not null, must be what the host got from this module's
/// `proxy_on_memory_allocate(size)` (the SDK's allocator: a boxed slice of exactly `size`
/// bytes from the global allocator, which the host has filled) and must not be owned by
/// anything else.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: by the caller's contract the pointer was allocated by the global allocator
    // with the layout of `[u8; size]` (align 1), all `size` bytes are initialised, and
    // nothing else owns it: a `Vec` with length and capacity `size` may take it over and
    // free it (a zero `size` is a dangling, unallocated pointer, which a zero-capacity
    // `Vec` never frees). This is what the SDK's own `get_property` does.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A property by its NUL-joined path: `Ok(None)` when the host does not have it, the
/// host's status when it fails.
pub fn get_property(path: &[u8]) -> Result<Option<Vec<u8>>, u32> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the path is a live slice for the whole call (the host copies it); the two
    // out-pointers point to live locals the host writes before returning.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match status {
        // SAFETY: on OK the host returns a buffer it allocated through
        // `proxy_on_memory_allocate` and handed over to the module (or no buffer).
        OK => Ok(unsafe { take(data, size) }),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

/// A header map's bytes in the pairs format (empty when the host returned no buffer), or
/// the host's status when it fails.
pub fn get_header_map_pairs(map_type: u32) -> Result<Vec<u8>, u32> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the two out-pointers point to live locals the host writes before returning.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    match status {
        // SAFETY: as in `get_property`: on OK the buffer is the module's to own.
        OK => Ok(unsafe { take(data, size) }.unwrap_or_default()),
        s => Err(s),
    }
}

/// A host status for an error message (`proxy_status_t`'s names).
pub fn status_name(status: u32) -> String {
    let name = match status {
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        6 => "InvalidMemoryAccess",
        7 => "Empty",
        8 => "CasMismatch",
        10 => "InternalFailure",
        _ => return format!("status {status}"),
    };
    name.to_string()
}
