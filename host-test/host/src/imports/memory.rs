//! Guest memory: reading and writing it, and allocating in it with the guest's own
//! allocator.

use wasmtime::{Caller, Memory};

use crate::abi::Status;
use crate::exports::Export;
use crate::state::HostState;

/// What every import receives: the caller, with the VM's state.
pub(super) type C<'a> = Caller<'a, HostState>;
/// What every import returns: a status (a trap only when the call must fail).
pub(super) type R = wasmtime::Result<i32>;

/// A guest pointer or length (an unsigned 32-bit number the guest passes as i32).
pub(super) fn addr(v: i32) -> usize {
    usize::try_from(u32::from_ne_bytes(v.to_ne_bytes())).unwrap_or(usize::MAX)
}

pub(super) fn memory(c: &mut C<'_>) -> Option<Memory> {
    c.data().memory
}

/// The guest's memory and the host state, borrowed together (to look a key up in place).
pub(super) fn guest<'a>(c: &'a mut C<'_>) -> Option<(&'a mut [u8], &'a mut HostState)> {
    let mem = c.data().memory?;
    Some(mem.data_and_store_mut(c))
}

/// `len` bytes at `ptr` of guest memory; `None` outside it.
pub(super) fn slice(data: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let start = addr(ptr);
    data.get(start..start.checked_add(addr(len))?)
}

/// The host's staging buffer, emptied (it keeps its capacity from call to call).
pub(super) fn take_scratch(c: &mut C<'_>) -> Vec<u8> {
    let mut b = std::mem::take(&mut c.data_mut().scratch);
    b.clear();
    b
}

/// [`return_bytes`] of the staged bytes, then the buffer goes back for the next call.
pub(super) fn return_staged(c: &mut C<'_>, staged: Vec<u8>, ptr_ptr: i32, len_ptr: i32) -> R {
    let r = return_bytes(c, &staged, ptr_ptr, len_ptr);
    c.data_mut().scratch = staged;
    r
}

/// Reads `len` bytes at `ptr`; `None` outside memory.
pub(super) fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let mem = memory(c)?;
    let start = addr(ptr);
    let end = start.checked_add(addr(len))?;
    mem.data(&*c).get(start..end).map(<[u8]>::to_vec)
}

pub(super) fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<(), Status> {
    let mem = memory(c).ok_or(Status::InvalidMemoryAccess)?;
    mem.write(&mut *c, addr(ptr), bytes)
        .map_err(|_| Status::InvalidMemoryAccess)
}

pub(super) fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> Result<(), Status> {
    write(c, ptr, &v.to_le_bytes())
}

pub(super) fn write_u64(c: &mut C<'_>, ptr: i32, v: u64) -> Result<(), Status> {
    write(c, ptr, &v.to_le_bytes())
}

pub(super) fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Allocates `size` bytes with the guest's allocator (`proxy_on_memory_allocate`, else
/// `malloc`); `Ok(None)` when it has none or returns 0; `Err` when it trapped.
pub(super) fn allocate(c: &mut C<'_>, size: usize) -> wasmtime::Result<Option<i32>> {
    let Ok(size) = i32::try_from(size) else {
        return Ok(None);
    };
    // Taken out for the call and put back (cloning a typed function is not free); the
    // allocator does not call the host, so nothing needs it meanwhile.
    let typed = match std::mem::replace(&mut c.data_mut().allocator, Export::Missing) {
        Export::Func(f) => f,
        other => {
            let e = match &other {
                Export::Mistyped(e) => Some(wasmtime::Error::msg(e.clone())),
                _ => None,
            };
            c.data_mut().allocator = other;
            return e.map_or(Ok(None), Err);
        }
    };
    let r = typed.call(&mut *c, size);
    c.data_mut().allocator = Export::Func(typed);
    let ptr = r?;
    Ok((ptr != 0).then_some(ptr))
}

/// Copies bytes into guest memory it allocates, and writes the pointer and length to the
/// guest's return slots (a null pointer for no bytes, as Envoy does).
pub(super) fn return_bytes(c: &mut C<'_>, bytes: &[u8], ptr_ptr: i32, len_ptr: i32) -> R {
    let ptr = if bytes.is_empty() {
        0
    } else {
        match allocate(c, bytes.len())? {
            Some(p) => p,
            None => return status(Status::InternalFailure),
        }
    };
    let r = write(c, ptr, bytes)
        .and_then(|()| write_u32(c, ptr_ptr, u32::from_ne_bytes(ptr.to_ne_bytes())))
        .and_then(|()| write_u32(c, len_ptr, len_u32(bytes.len())));
    done(r)
}

pub(super) fn status(s: Status) -> R {
    Ok(s.code())
}

pub(super) fn done(r: Result<(), Status>) -> R {
    status(r.err().unwrap_or(Status::Ok))
}

pub(super) fn read_string(c: &mut C<'_>, ptr: i32, len: i32) -> Option<String> {
    read(c, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}
