//! Logging, time, timers and the context lifecycle.

use super::memory::{C, R, done, len_u32, read_string, status, write_u32, write_u64};
use crate::abi::{LogLevel, Status};

pub(super) fn proxy_log(mut c: C<'_>, level: i32, ptr: i32, len: i32) -> R {
    let Some(level) = LogLevel::from_code(level) else {
        return status(Status::BadArgument);
    };
    if level < c.data().settings.log_level {
        // Below the host's level: dropped, as Envoy drops it.
        return status(Status::Ok);
    }
    let Some(message) = read_string(&mut c, ptr, len) else {
        return status(Status::InvalidMemoryAccess);
    };
    c.data_mut().log(level, message);
    status(Status::Ok)
}

pub(super) fn proxy_get_log_level(mut c: C<'_>, ret: i32) -> R {
    let level = c.data().settings.log_level.code();
    done(write_u32(
        &mut c,
        ret,
        len_u32(usize::try_from(level).unwrap_or(0)),
    ))
}

pub(super) fn proxy_get_current_time_nanoseconds(mut c: C<'_>, ret: i32) -> R {
    let now = c.data().settings.now_nanos;
    done(write_u64(&mut c, ret, now))
}

pub(super) fn proxy_set_tick_period_milliseconds(mut c: C<'_>, period: i32) -> R {
    c.data_mut().tick_period_ms = u32::from_ne_bytes(period.to_ne_bytes());
    status(Status::Ok)
}

pub(super) fn proxy_set_effective_context(mut c: C<'_>, context: i32) -> R {
    let id = u32::from_ne_bytes(context.to_ne_bytes());
    let state = c.data_mut();
    if id == 1 || id == state.stream.context {
        state.current_context = id;
        status(Status::Ok)
    } else {
        status(Status::BadArgument)
    }
}

pub(super) fn proxy_done(mut c: C<'_>) -> R {
    let state = c.data_mut();
    state.done_called = state.done_called.saturating_add(1);
    status(Status::Ok)
}
