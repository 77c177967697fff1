//! Header maps: the stream's, and a callout response's.

use super::memory::{
    C, R, done, guest, len_u32, read, return_staged, slice, status, take_scratch, write_u32,
};
use crate::abi::{self, Status};
use crate::state::Pairs;

pub(super) fn key_eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Changes a stream's header map (the callout maps are read-only).
pub(super) fn with_map(c: &mut C<'_>, t: i32, f: impl FnOnce(&mut Pairs)) -> R {
    if !(0..=5).contains(&t) {
        return status(Status::BadArgument);
    }
    match c.data_mut().stream.map_mut(t) {
        Some(m) => {
            f(m);
            status(Status::Ok)
        }
        None => status(Status::BadArgument),
    }
}

pub(super) fn proxy_get_header_map_size(mut c: C<'_>, t: i32, ret: i32) -> R {
    // Envoy answers the map's byte size.
    let size = c.data().with_map(t, |map| {
        map.iter()
            .map(|(k, v)| k.len().saturating_add(v.len()))
            .sum::<usize>()
    });
    let Some(size) = size else {
        return status(Status::BadArgument);
    };
    done(write_u32(&mut c, ret, len_u32(size)))
}

pub(super) fn proxy_get_header_map_pairs(mut c: C<'_>, t: i32, ptr_ptr: i32, len_ptr: i32) -> R {
    let mut staged = take_scratch(&mut c);
    if c.data().serialize_map(t, &mut staged).is_none() {
        return status(Status::BadArgument);
    }
    return_staged(&mut c, staged, ptr_ptr, len_ptr)
}

pub(super) fn proxy_set_header_map_pairs(mut c: C<'_>, t: i32, ptr: i32, len: i32) -> R {
    let Some(bytes) = read(&mut c, ptr, len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(pairs) = abi::deserialize_pairs(&bytes) else {
        return status(Status::BadArgument);
    };
    with_map(&mut c, t, |m| *m = pairs)
}

pub(super) fn proxy_get_header_map_value(
    mut c: C<'_>,
    t: i32,
    kp: i32,
    kl: i32,
    ptr_ptr: i32,
    len_ptr: i32,
) -> R {
    let mut staged = take_scratch(&mut c);
    let Some((data, state)) = guest(&mut c) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(key) = slice(data, kp, kl) else {
        return status(Status::InvalidMemoryAccess);
    };
    // Envoy returns the first value of a repeated header.
    let found = state.with_map(t, |map| {
        map.iter()
            .find(|(k, _)| key_eq(k, key))
            .map(|(_, v)| staged.extend_from_slice(v))
            .is_some()
    });
    match found {
        None => status(Status::BadArgument),
        Some(false) => {
            c.data_mut().scratch = staged;
            status(Status::NotFound)
        }
        Some(true) => return_staged(&mut c, staged, ptr_ptr, len_ptr),
    }
}

pub(super) fn proxy_add_header_map_value(
    mut c: C<'_>,
    t: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> R {
    let (Some(key), Some(value)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
        return status(Status::InvalidMemoryAccess);
    };
    with_map(&mut c, t, |m| m.push((key.to_ascii_lowercase(), value)))
}

pub(super) fn proxy_replace_header_map_value(
    mut c: C<'_>,
    t: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> R {
    let (Some(key), Some(value)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
        return status(Status::InvalidMemoryAccess);
    };
    with_map(&mut c, t, |m| {
        match m.iter().position(|(k, _)| key_eq(k, &key)) {
            Some(i) => {
                if let Some(slot) = m.get_mut(i) {
                    slot.1 = value;
                }
                let mut seen = 0usize;
                m.retain(|(k, _)| {
                    if key_eq(k, &key) {
                        seen = seen.saturating_add(1);
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => m.push((key.to_ascii_lowercase(), value)),
        }
    })
}

pub(super) fn proxy_remove_header_map_value(mut c: C<'_>, t: i32, kp: i32, kl: i32) -> R {
    let Some(key) = read(&mut c, kp, kl) else {
        return status(Status::InvalidMemoryAccess);
    };
    with_map(&mut c, t, |m| m.retain(|(k, _)| !key_eq(k, &key)))
}
