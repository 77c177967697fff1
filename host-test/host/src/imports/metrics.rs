//! Metrics: counters, gauges and histograms the guest defines.

use std::sync::Arc;

use super::memory::{C, R, addr, done, len_u32, read_string, status, write_u32, write_u64};
use crate::abi::{MetricType, Status};
use crate::state::Metric;

pub(super) fn metric<'a>(c: &'a mut C<'_>, id: i32) -> Option<&'a mut Metric> {
    let index = addr(id).checked_sub(1)?;
    c.data_mut().metrics.get_mut(index)
}

pub(super) fn proxy_define_metric(mut c: C<'_>, t: i32, np: i32, nl: i32, ret: i32) -> R {
    let Some(kind) = MetricType::from_code(t) else {
        return status(Status::BadArgument);
    };
    let Some(name) = read_string(&mut c, np, nl) else {
        return status(Status::InvalidMemoryAccess);
    };
    let metrics = &mut c.data_mut().metrics;
    let index = match metrics.iter().position(|m| *m.name == *name) {
        Some(i) => i,
        None => {
            metrics.push(Metric {
                name: Arc::from(name),
                kind,
                value: 0,
            });
            metrics.len().saturating_sub(1)
        }
    };
    done(write_u32(&mut c, ret, len_u32(index).saturating_add(1)))
}

pub(super) fn proxy_increment_metric(mut c: C<'_>, id: i32, offset: i64) -> R {
    let Some(m) = metric(&mut c, id) else {
        return status(Status::NotFound);
    };
    match m.kind {
        MetricType::Counter if offset < 0 => status(Status::BadArgument),
        MetricType::Counter | MetricType::Gauge => {
            m.value = m.value.saturating_add(offset);
            // `metric` found it: the id is a valid index.
            let index = addr(id).saturating_sub(1);
            c.data_mut().stream.increments.push((index, offset));
            status(Status::Ok)
        }
        MetricType::Histogram => status(Status::BadArgument),
    }
}

pub(super) fn proxy_record_metric(mut c: C<'_>, id: i32, value: i64) -> R {
    let Some(m) = metric(&mut c, id) else {
        return status(Status::NotFound);
    };
    match m.kind {
        MetricType::Counter | MetricType::Gauge => m.value = value,
        MetricType::Histogram => m.value = m.value.saturating_add(1),
    }
    status(Status::Ok)
}

pub(super) fn proxy_get_metric(mut c: C<'_>, id: i32, ret: i32) -> R {
    let Some(m) = metric(&mut c, id) else {
        return status(Status::NotFound);
    };
    if m.kind == MetricType::Histogram {
        return status(Status::BadArgument);
    }
    let v = u64::from_ne_bytes(m.value.to_ne_bytes());
    done(write_u64(&mut c, ret, v))
}
