//! Shared data and shared queues.

use super::memory::{
    C, R, addr, done, len_u32, read, read_string, return_bytes, status, write_u32,
};
use crate::abi::Status;
use crate::state::Queue;

pub(super) fn proxy_set_shared_data(
    mut c: C<'_>,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
    cas: i32,
) -> R {
    let (Some(key), Some(value)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
        return status(Status::InvalidMemoryAccess);
    };
    let cas = u32::from_ne_bytes(cas.to_ne_bytes());
    let shared = &mut c.data_mut().shared;
    let current = shared.get(&key).map_or(0, |(_, cas)| *cas);
    if cas != 0 && cas != current {
        return status(Status::CasMismatch);
    }
    shared.insert(key, (value, current.wrapping_add(1).max(1)));
    status(Status::Ok)
}

pub(super) fn proxy_get_shared_data(
    mut c: C<'_>,
    kp: i32,
    kl: i32,
    ptr_ptr: i32,
    len_ptr: i32,
    cas_ptr: i32,
) -> R {
    let Some(key) = read(&mut c, kp, kl) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some((value, cas)) = c.data().shared.get(&key).cloned() else {
        return status(Status::NotFound);
    };
    if let Err(s) = write_u32(&mut c, cas_ptr, cas) {
        return status(s);
    }
    return_bytes(&mut c, &value, ptr_ptr, len_ptr)
}

pub(super) fn queue_id(index: usize) -> u32 {
    len_u32(index).saturating_add(1)
}

pub(super) fn proxy_register_shared_queue(mut c: C<'_>, np: i32, nl: i32, ret: i32) -> R {
    let Some(name) = read_string(&mut c, np, nl) else {
        return status(Status::InvalidMemoryAccess);
    };
    let queues = &mut c.data_mut().queues;
    let index = match queues.iter().position(|q| q.name == name) {
        Some(i) => i,
        None => {
            queues.push(Queue {
                name,
                ..Queue::default()
            });
            queues.len().saturating_sub(1)
        }
    };
    done(write_u32(&mut c, ret, queue_id(index)))
}

pub(super) fn proxy_resolve_shared_queue(
    mut c: C<'_>,
    _vp: i32,
    _vl: i32,
    np: i32,
    nl: i32,
    ret: i32,
) -> R {
    let Some(name) = read_string(&mut c, np, nl) else {
        return status(Status::InvalidMemoryAccess);
    };
    match c.data().queues.iter().position(|q| q.name == name) {
        Some(i) => done(write_u32(&mut c, ret, queue_id(i))),
        None => status(Status::NotFound),
    }
}

pub(super) fn queue(c: &mut C<'_>, id: i32) -> Option<usize> {
    let index = addr(id).checked_sub(1)?;
    (index < c.data().queues.len()).then_some(index)
}

pub(super) fn proxy_enqueue_shared_queue(mut c: C<'_>, id: i32, p: i32, l: i32) -> R {
    let Some(value) = read(&mut c, p, l) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(i) = queue(&mut c, id) else {
        return status(Status::NotFound);
    };
    if let Some(q) = c.data_mut().queues.get_mut(i) {
        q.items.push_back(value);
    }
    status(Status::Ok)
}

pub(super) fn proxy_dequeue_shared_queue(mut c: C<'_>, id: i32, ptr_ptr: i32, len_ptr: i32) -> R {
    let Some(i) = queue(&mut c, id) else {
        return status(Status::NotFound);
    };
    let item = c
        .data_mut()
        .queues
        .get_mut(i)
        .and_then(|q| q.items.pop_front());
    match item {
        Some(v) => return_bytes(&mut c, &v, ptr_ptr, len_ptr),
        None => status(Status::Empty),
    }
}
