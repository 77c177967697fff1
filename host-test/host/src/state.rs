//! Everything the host keeps for one VM (wasmtime's store data): the settings, the current
//! stream, logs, metrics, shared data and queues, pending callouts. The imports read and
//! change it; a [`crate::PluginInstance`] begins and reads back each stream through it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use wasmtime::{Memory, StoreLimits, StoreLimitsBuilder};

use crate::abi::{self, LogLevel, MetricType};
use crate::envoy::{StreamInput, StreamSink};
use crate::exports::Export;
use crate::outcome::{HttpCall, LocalReply, LogLine};
use crate::settings::{HostSettings, HttpFixture};

/// The root context's id, as Envoy gives the first root context.
pub(crate) const ROOT_CONTEXT: u32 = 1;

/// A metric the guest defined.
#[derive(Debug, Clone)]
pub(crate) struct Metric {
    pub(crate) name: Arc<str>,
    pub(crate) kind: MetricType,
    pub(crate) value: i64,
}

/// A header map: pairs in order, names as the guest or the host gave them.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A stream's properties: path (NUL-joined) and value, looked up by a scan (a stream has a
/// dozen). The buffers are kept from one stream to the next and overwritten in place, so a
/// stream sets its properties without allocating.
#[derive(Debug, Default)]
pub(crate) struct Props {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    len: usize,
}

impl Props {
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    fn live(&self) -> &[(Vec<u8>, Vec<u8>)] {
        self.entries.get(..self.len).unwrap_or_default()
    }

    pub(crate) fn get(&self, path: &[u8]) -> Option<&[u8]> {
        self.live()
            .iter()
            .find(|(k, _)| k.as_slice() == path)
            .map(|(_, v)| v.as_slice())
    }

    /// A new property's (emptied) value buffer.
    fn push(&mut self, path: &[u8]) -> Option<&mut Vec<u8>> {
        if self.entries.len() <= self.len {
            self.entries.push((Vec::new(), Vec::new()));
        }
        let (k, v) = self.entries.get_mut(self.len)?;
        if k.as_slice() != path {
            k.clear();
            k.extend_from_slice(path);
        }
        v.clear();
        self.len = self.len.saturating_add(1);
        Some(v)
    }

    /// Sets a property, replacing its value if it is set.
    pub(crate) fn set(&mut self, path: &[u8], value: Vec<u8>) {
        let len = self.len;
        if let Some((_, v)) = self
            .entries
            .iter_mut()
            .take(len)
            .find(|(k, _)| k.as_slice() == path)
        {
            *v = value;
        } else if let Some(v) = self.push(path) {
            *v = value;
        }
    }
}

/// The number of header map types a stream has (`HTTP_REQUEST_HEADERS` ..
/// `GRPC_CALL_TRAILING_METADATA`).
const STREAM_MAPS: usize = 6;
/// The number of buffer types a stream has (`HTTP_REQUEST_BODY` .. `UPSTREAM_DATA`).
const STREAM_BUFFERS: usize = 4;

/// Per-stream state: what the guest reads and what it did. Kept from one stream to the next
/// and reset in place (its buffers keep their capacity).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) context: u32,
    pub(crate) properties: Props,
    maps: [Pairs; STREAM_MAPS],
    buffers: [Vec<u8>; STREAM_BUFFERS],
    pub(crate) local_reply: Option<LocalReply>,
    pub(crate) closed: Vec<i32>,
    pub(crate) continued: Vec<i32>,
    pub(crate) calls: Vec<HttpCall>,
    /// This stream's HTTP callout answers by upstream (before the settings' fixtures): a
    /// replayed request's recorded CUSTOM provider answers.
    pub(crate) answers: BTreeMap<String, HttpFixture>,
    /// The metric increments made during this stream: metric index and offset.
    pub(crate) increments: Vec<(usize, i64)>,
    /// How many request headers were set so far while filling.
    headers_set: usize,
}

impl StreamState {
    pub(crate) fn map(&self, t: i32) -> &[(Vec<u8>, Vec<u8>)] {
        usize::try_from(t)
            .ok()
            .and_then(|i| self.maps.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// A stream header map, to change; `None` for another type.
    pub(crate) fn map_mut(&mut self, t: i32) -> Option<&mut Pairs> {
        usize::try_from(t).ok().and_then(|i| self.maps.get_mut(i))
    }

    pub(crate) fn buffer(&self, t: i32) -> &[u8] {
        usize::try_from(t)
            .ok()
            .and_then(|i| self.buffers.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// A stream buffer, to change; `None` for another type.
    pub(crate) fn buffer_mut(&mut self, t: i32) -> Option<&mut Vec<u8>> {
        usize::try_from(t)
            .ok()
            .and_then(|i| self.buffers.get_mut(i))
    }

    /// Empties everything for a new stream, keeping the buffers' capacity.
    fn reset(&mut self, context: u32) {
        self.context = context;
        self.properties.clear();
        for m in self.maps.iter_mut().skip(1) {
            m.clear();
        }
        self.headers_set = 0;
        for b in &mut self.buffers {
            b.clear();
        }
        self.local_reply = None;
        self.closed.clear();
        self.continued.clear();
        self.calls.clear();
        self.answers.clear();
        self.increments.clear();
    }

    /// Ends filling: request headers left over from an earlier stream go.
    fn end_fill(&mut self) {
        let n = self.headers_set;
        if let Some(m) = self.maps.get_mut(0) {
            m.truncate(n);
        }
    }

    /// Sets what a [`StreamInput`] shows.
    pub(crate) fn fill(&mut self, input: StreamInput) {
        for (path, value) in input.properties.into_inner() {
            self.properties.set(&path, value);
        }
        for (k, v) in &input.request_headers {
            self.header(k.as_bytes(), v.as_bytes());
        }
        if let Some(b) = self.buffer_mut(abi::buffer::HTTP_REQUEST_BODY) {
            *b = input.request_body;
        }
        if let Some(b) = self.buffer_mut(abi::buffer::DOWNSTREAM_DATA) {
            *b = input.downstream_data;
        }
    }
}

impl StreamSink for StreamState {
    fn property(&mut self, path: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        if let Some(v) = self.properties.push(path) {
            value(v);
        }
    }

    fn header(&mut self, name: &[u8], value: &[u8]) {
        let i = self.headers_set;
        let Some(map) = self.maps.get_mut(0) else {
            return;
        };
        match map.get_mut(i) {
            Some((k, v)) => {
                k.clear();
                k.extend_from_slice(name);
                v.clear();
                v.extend_from_slice(value);
            }
            None => map.push((name.to_vec(), value.to_vec())),
        }
        self.headers_set = i.saturating_add(1);
    }
}

/// A shared queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) items: VecDeque<Vec<u8>>,
}

/// Everything the host keeps for one VM (wasmtime's store data).
pub(crate) struct HostState {
    pub(crate) limits: StoreLimits,
    pub(crate) settings: Arc<HostSettings>,
    pub(crate) plugin_configuration: Vec<u8>,
    pub(crate) stream: StreamState,
    pub(crate) current_context: u32,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) shared: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    pub(crate) queues: Vec<Queue>,
    pub(crate) tick_period_ms: u32,
    pub(crate) pending_calls: VecDeque<(u32, u32)>,
    pub(crate) next_token: u32,
    pub(crate) call_response: Option<HttpFixture>,
    pub(crate) rng: u64,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) done_called: u32,
    /// The guest's `memory`, resolved once.
    pub(crate) memory: Option<Memory>,
    /// The guest's allocator (`proxy_on_memory_allocate`, else `malloc`), resolved once.
    pub(crate) allocator: Export<i32, i32>,
    /// A buffer the imports reuse to stage bytes for the guest.
    pub(crate) scratch: Vec<u8>,
}

impl HostState {
    pub(crate) fn new(settings: Arc<HostSettings>, plugin_configuration: Vec<u8>) -> HostState {
        let limits = StoreLimitsBuilder::new()
            .memory_size(settings.max_memory)
            .build();
        let rng = settings.random_seed | 1;
        HostState {
            limits,
            settings,
            plugin_configuration,
            stream: StreamState::default(),
            current_context: ROOT_CONTEXT,
            logs: Vec::new(),
            metrics: Vec::new(),
            shared: BTreeMap::new(),
            queues: Vec::new(),
            tick_period_ms: 0,
            pending_calls: VecDeque::new(),
            next_token: 1,
            call_response: None,
            rng,
            stdout: Vec::new(),
            stderr: Vec::new(),
            done_called: 0,
            memory: None,
            allocator: Export::Missing,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn begin_stream(&mut self, context: u32, fill: impl FnOnce(&mut StreamState)) {
        self.stream.reset(context);
        fill(&mut self.stream);
        self.stream.end_fill();
        self.current_context = context;
        self.pending_calls.clear();
    }

    /// The metric increments of the current stream, by name.
    pub(crate) fn increments(&self) -> Vec<(Arc<str>, i64)> {
        self.stream
            .increments
            .iter()
            .filter_map(|(i, by)| self.metrics.get(*i).map(|m| (m.name.clone(), *by)))
            .collect()
    }

    /// The log lines from index `start` on, removed.
    pub(crate) fn take_logs(&mut self, start: usize) -> Vec<LogLine> {
        if start >= self.logs.len() {
            return Vec::new();
        }
        self.logs.split_off(start)
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        let context_id = self.current_context;
        self.logs.push(LogLine {
            level,
            message,
            context_id,
        });
    }

    /// A property: the stream's, else the host-wide ones, else the plugin's own.
    pub(crate) fn property(&self, path: &[u8]) -> Option<&[u8]> {
        if let Some(v) = self.stream.properties.get(path) {
            return Some(v);
        }
        if let Some(v) = self.settings.properties.get_raw(path) {
            return Some(v);
        }
        match path {
            b"plugin_name" | b"plugin_root_id" => Some(self.settings.root_id.as_bytes()),
            b"plugin_vm_id" => Some(self.settings.vm_id.as_bytes()),
            _ => None,
        }
    }

    /// The next pseudo-random u64 (xorshift64*, seeded: deterministic).
    pub(crate) fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The buffer of a type: the stream's, the configurations, or a callout's body.
    pub(crate) fn buffer(&self, t: i32) -> Option<&[u8]> {
        match t {
            abi::buffer::PLUGIN_CONFIGURATION => Some(&self.plugin_configuration),
            abi::buffer::VM_CONFIGURATION => Some(&self.settings.vm_configuration),
            abi::buffer::HTTP_CALL_RESPONSE_BODY => {
                self.call_response.as_ref().map(|r| r.body.as_slice())
            }
            abi::buffer::HTTP_REQUEST_BODY
            | abi::buffer::HTTP_RESPONSE_BODY
            | abi::buffer::DOWNSTREAM_DATA
            | abi::buffer::UPSTREAM_DATA => Some(self.stream.buffer(t)),
            _ => None,
        }
    }

    /// Serializes a header map of a type into `out` (callout maps from the current response);
    /// `None` for an unknown type.
    pub(crate) fn serialize_map(&self, t: i32, out: &mut Vec<u8>) -> Option<()> {
        self.with_map(t, |pairs| abi::serialize_pairs_into(out, pairs))
    }

    /// Runs `f` over a header map of a type (callout maps from the current response).
    pub(crate) fn with_map<T>(
        &self,
        t: i32,
        f: impl FnOnce(&[(Vec<u8>, Vec<u8>)]) -> T,
    ) -> Option<T> {
        let from = |p: &[(String, String)]| -> Pairs {
            p.iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                .collect()
        };
        match t {
            abi::map::HTTP_CALL_RESPONSE_HEADERS => {
                self.call_response.as_ref().map(|r| f(&from(&r.headers)))
            }
            abi::map::HTTP_CALL_RESPONSE_TRAILERS => {
                self.call_response.as_ref().map(|r| f(&from(&r.trailers)))
            }
            0..=5 => Some(f(self.stream.map(t))),
            _ => None,
        }
    }
}
