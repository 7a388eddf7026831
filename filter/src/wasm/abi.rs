//! The proxy-wasm host calls the filter makes, declared directly so that no status the host
//! returns can panic the VM.
//!
//! The SDK's `hostcalls` panic on any status they did not expect — Envoy answers `BadArgument`
//! when, for example, request headers are read in the response phase of a local reply, and that
//! panic crashed the VM for every later request. Here every call returns a `Result` the glue
//! handles. Buffers the host returns were allocated through the SDK's `proxy_on_memory_allocate`
//! (a `Vec` allocation), so they are taken back as `Vec`s, as the SDK itself does.

use std::ptr::null_mut;

pub type Status = u32;
pub const OK: Status = 0;
pub const NOT_FOUND: Status = 1;
pub const CAS_MISMATCH: Status = 8;

pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const PLUGIN_CONFIGURATION: u32 = 7;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_GAUGE: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> Status;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize)
        -> Status;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> Status;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> Status;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> Status;
    fn proxy_record_metric(metric_id: u32, value: u64) -> Status;
    fn proxy_send_local_response(
        response_code: u32,
        response_code_details_data: *const u8,
        response_code_details_size: usize,
        response_body_data: *const u8,
        response_body_size: usize,
        additional_headers_map_data: *const u8,
        additional_headers_size: usize,
        grpc_status: i32,
    ) -> Status;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> Status;
}

fn result(status: Status) -> Result<(), Status> {
    if status == OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// Takes ownership of a buffer the host allocated in our memory.
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the host allocated `size` bytes at `data` through proxy_on_memory_allocate,
        // i.e. a Vec<u8> with capacity `size`, and hands its ownership to us.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }
}

/// Runs a call that returns a host-allocated buffer: `Ok(None)` for NotFound.
fn fetch(call: impl FnOnce(*mut *mut u8, *mut usize) -> Status) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        OK => Ok(Some(owned(data, size))),
        NOT_FOUND => Ok(None),
        status => Err(status),
    }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length describe `message`, which outlives the call.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

pub fn now_unix_s() -> u64 {
    let mut nanos = 0u64;
    // SAFETY: `nanos` is a valid out-pointer for the duration of the call.
    match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
        OK => nanos / 1_000_000_000,
        _ => 0,
    }
}

pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, Status> {
    // SAFETY: out-pointers are valid for the call.
    fetch(|d, s| unsafe { proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, d, s) })
        .map(Option::unwrap_or_default)
}

/// The first value of header `name` (lower-case); `Ok(None)` when the map has none.
pub fn header_value(map: u32, name: &str) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: `name` outlives the call; out-pointers are valid.
    fetch(|d, s| unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), d, s) })
}

/// The serialized header map (see `header_map::pairs`).
pub fn header_map(map: u32) -> Result<Vec<u8>, Status> {
    // SAFETY: out-pointers are valid for the call.
    fetch(|d, s| unsafe { proxy_get_header_map_pairs(map, d, s) }).map(Option::unwrap_or_default)
}

/// Sets `name` to `value` (replacing every copy), or removes every copy when `value` is `None`.
pub fn set_header(map: u32, name: &str, value: Option<&[u8]>) -> Result<(), Status> {
    // SAFETY: `name` and `value` outlive the call.
    result(unsafe {
        match value {
            Some(v) => {
                proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len())
            }
            None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
        }
    })
}

pub fn add_header(map: u32, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: `name` and `value` outlive the call.
    result(unsafe {
        proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// A property by path, e.g. `["response", "flags"]`.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let mut serialized = Vec::new();
    for part in path {
        serialized.extend_from_slice(part.as_bytes());
        serialized.push(0);
    }
    // SAFETY: `serialized` outlives the call; out-pointers are valid.
    fetch(|d, s| unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), d, s) })
}

/// Sets a top-level property (Envoy keeps it in the stream's filter state as `wasm.<name>`,
/// where a later [`property`] call with `[name]` finds it).
pub fn set_property(name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: `name` and `value` outlive the call.
    result(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// A shared-data value and its CAS token.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, u32), Status> {
    let mut cas = 0u32;
    // SAFETY: `key` outlives the call; out-pointers are valid.
    let value =
        fetch(|d, s| unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), d, s, &mut cas) })?;
    Ok((value, cas))
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: `key` and `value` outlive the call.
    result(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn define_counter(name: &str) -> Result<u32, Status> {
    define_metric(METRIC_COUNTER, name)
}

pub fn define_gauge(name: &str) -> Result<u32, Status> {
    define_metric(METRIC_GAUGE, name)
}

fn define_metric(kind: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: `name` outlives the call; `id` is a valid out-pointer.
    result(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn record(id: u32, value: u64) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_record_metric(id, value) };
}

pub fn increment(id: u32) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_increment_metric(id, 1) };
}

/// Answers the stream locally with `status`, `body` and `headers` (Envoy sends the reply once the
/// callback returns; the callback must then return `Pause`). `details` is the response code
/// details Envoy logs (`%RESPONSE_CODE_DETAILS%`): one token, no spaces.
pub fn send_local_response(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[(&[u8], &[u8])],
) -> Result<(), Status> {
    let headers = crate::header_map::serialize(headers);
    // SAFETY: every slice outlives the call.
    result(unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            // No gRPC status: a plain HTTP reply.
            -1,
        )
    })
}

/// Calls one of the host's foreign functions (e.g. Envoy's `set_envoy_filter_state`); what it
/// returns is dropped.
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<(), Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: `name` and `arguments` outlive the call; out-pointers are valid.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    };
    drop(owned(data, size));
    result(status)
}
