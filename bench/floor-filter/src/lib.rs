//! The benchmark's floor: the cheapest proxy-wasm filter that does the I/O of kasi's job. It
//! reads the request's `cookie` header (the bytes kasi must look at), writes it back (kasi
//! restores a signed session to the plain value `stateful_session` wrote: one request-header
//! write, which also makes Envoy clear the route cache) and steers the request as kasi does: one
//! call of Envoy's foreign function `set_envoy_filter_state`, which sets the filter-state object
//! `envoy.network.transport_socket.original_dst_address` (read by the ORIGINAL_DST
//! PassthroughCluster before anything else) to the address given as its plugin configuration,
//! verbatim, for the request's lifetime. Nothing else: no parsing, no counters, no logging, no
//! response phase.
//!
//! Cheapest also means no SDK: Envoy calls into the VM only for the callbacks a module exports,
//! and an SDK exports them all (context create, response headers and body, log, done, delete:
//! six more calls into the VM per request). This module exports the request-headers callback
//! and what the ABI requires, so it measures what any proxy-wasm filter that does this job must
//! pay: one call into the VM and three host calls, one of which copies a header into it.
//! The foreign function's argument (a serialized `SetEnvoyFilterStateArguments`) is built once,
//! when the plugin is configured.

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::cell::RefCell;
    use std::ptr::null_mut;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_call_foreign_function(
            function_name_data: *const u8,
            function_name_size: usize,
            arguments_data: *const u8,
            arguments_size: usize,
            results_data: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
    }

    const OK: u32 = 0;
    const REQUEST_HEADERS: u32 = 0;
    const PLUGIN_CONFIGURATION: u32 = 7;
    const READ: &[u8] = b"cookie";
    const SET_FILTER_STATE: &[u8] = b"set_envoy_filter_state";

    thread_local! {
        /// The serialized `SetEnvoyFilterStateArguments` for the configured address.
        static ARGUMENTS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        let mut buffer: Vec<u8> = Vec::with_capacity(size);
        let data = buffer.as_mut_ptr();
        std::mem::forget(buffer);
        data
    }

    /// Takes back a buffer the host allocated through `proxy_on_memory_allocate`.
    ///
    /// # Safety
    /// `data` and `size` must come from a host call that returned OK.
    unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() {
            Vec::new()
        } else {
            Vec::from_raw_parts(data, size, size)
        }
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(_root_context_id: u32, size: usize) -> u32 {
        let (mut data, mut len) = (null_mut(), 0);
        // SAFETY: out-pointers are valid; the buffer is the host's, handed over on OK.
        let config = unsafe {
            if proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) != OK {
                return 0;
            }
            owned(data, len)
        };
        let address = config.trim_ascii();
        if address.is_empty() || address.len() > 127 {
            return 0;
        }
        ARGUMENTS.with(|a| *a.borrow_mut() = crate::set_filter_state_arguments(address));
        1
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(_context_id: u32, _headers: u32, _eos: u32) -> u32 {
        let (mut data, mut len) = (null_mut(), 0);
        // SAFETY: key and out-pointers are valid for the call; the value buffer is ours on OK.
        let found = unsafe {
            proxy_get_header_map_value(
                REQUEST_HEADERS,
                READ.as_ptr(),
                READ.len(),
                &mut data,
                &mut len,
            ) == OK
        };
        if found {
            // SAFETY: returned by the host call above.
            let cookie = unsafe { owned(data, len) };
            // The job writes the `cookie` header back (a signed session restored to the value
            // `stateful_session` wrote): the same write, of the same bytes. A request-header
            // write is what makes Envoy clear the route cache, so the floor must pay it too.
            // SAFETY: key and value outlive the call.
            unsafe {
                proxy_replace_header_map_value(
                    REQUEST_HEADERS,
                    READ.as_ptr(),
                    READ.len(),
                    cookie.as_ptr(),
                    cookie.len(),
                );
            }
            ARGUMENTS.with(|a| {
                let a = a.borrow();
                let (mut results, mut results_len) = (null_mut(), 0);
                // SAFETY: name and arguments outlive the call; out-pointers are valid.
                let status = unsafe {
                    proxy_call_foreign_function(
                        SET_FILTER_STATE.as_ptr(),
                        SET_FILTER_STATE.len(),
                        a.as_ptr(),
                        a.len(),
                        &mut results,
                        &mut results_len,
                    )
                };
                if status == OK {
                    // SAFETY: returned by the host call above (nothing, for this function).
                    drop(unsafe { owned(results, results_len) });
                }
            });
        }
        0 // Continue
    }
}

/// Envoy's filter-state object that the ORIGINAL_DST cluster reads first.
pub const ORIGINAL_DST_FILTER_STATE: &[u8] = b"envoy.network.transport_socket.original_dst_address";

/// `SetEnvoyFilterStateArguments { path = 1; value = 2; span = 3 }` (Envoy's
/// `source/extensions/common/wasm/foreign.cc`) for `address` (shorter than 128 bytes: one-byte
/// lengths), span `DownstreamRequest` (1): the bytes kasi's filter sends
/// (`kasi_filter::policy::set_filter_state_arguments`; the floor has no dependencies).
pub fn set_filter_state_arguments(address: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ORIGINAL_DST_FILTER_STATE.len() + address.len() + 6);
    for (tag, text) in [(0x0a, ORIGINAL_DST_FILTER_STATE), (0x12, address)] {
        out.push(tag);
        out.push(text.len() as u8);
        out.extend_from_slice(text);
    }
    out.extend_from_slice(&[0x18, 1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_same_bytes_as_kasi() {
        for address in ["127.0.0.2:18012", "[fc00::1:2]:8013"] {
            assert_eq!(
                set_filter_state_arguments(address.as_bytes()),
                kasi_filter::policy::set_filter_state_arguments(
                    kasi_filter::policy::ORIGINAL_DST_FILTER_STATE,
                    address,
                    kasi_filter::policy::LIFE_SPAN_DOWNSTREAM_REQUEST,
                )
            );
        }
    }
}
