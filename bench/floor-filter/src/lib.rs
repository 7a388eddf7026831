//! The benchmark's floor: the cheapest proxy-wasm filter that does the I/O of kasi's job. It
//! reads the request's `cookie` header (the bytes kasi must look at) and writes
//! `x-envoy-original-dst-host` (the address given as its plugin configuration, verbatim), and
//! nothing else: no parsing, no counters, no logging, no response phase.
//!
//! Cheapest also means no SDK: Envoy calls into the VM only for the callbacks a module exports,
//! and an SDK exports them all (context create, response headers and body, log, done, delete:
//! six more calls into the VM per request). This module exports the request-headers callback
//! and what the ABI requires, so it measures what any proxy-wasm filter that touches a request
//! must pay: one call into the VM and two host calls, one of which copies a header into it.

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
    }

    const OK: u32 = 0;
    const REQUEST_HEADERS: u32 = 0;
    const PLUGIN_CONFIGURATION: u32 = 7;
    const READ: &[u8] = b"cookie";
    const WRITE: &[u8] = b"x-envoy-original-dst-host";

    thread_local! {
        static ADDRESS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
        let address = config.trim_ascii().to_vec();
        if address.is_empty() {
            return 0;
        }
        ADDRESS.with(|a| *a.borrow_mut() = address);
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
            drop(unsafe { owned(data, len) });
            ADDRESS.with(|a| {
                let a = a.borrow();
                // SAFETY: key and value outlive the call.
                unsafe {
                    proxy_replace_header_map_value(
                        REQUEST_HEADERS,
                        WRITE.as_ptr(),
                        WRITE.len(),
                        a.as_ptr(),
                        a.len(),
                    )
                };
            });
        }
        0 // Continue
    }
}
