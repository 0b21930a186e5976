/* hello: the smallest useful wasi:http server, in C.
 *
 *   GET /       200 "hello from featherweight v<HELLO_VERSION>\n"
 *   GET /trap   the guest traps (unreachable): the host answers 500 and keeps serving
 *   otherwise   the same as /
 *
 * Every request logs one line to stdout ("hello: GET /path"), which is what `kubectl logs`
 * shows. Each request runs in a fresh instance, so there is no state between requests.
 * Bindings come from `wit-bindgen c` for the world wasi:http/proxy@0.2.12 (see build.sh). */
#include <stdio.h>
#include <string.h>

#include "proxy.h"

#ifndef HELLO_VERSION
#define HELLO_VERSION 1
#endif
#define STR2(x) #x
#define STR(x) STR2(x)
static const char BODY[] = "hello from featherweight v" STR(HELLO_VERSION) "\n";

static const char *method_name(const wasi_http_types_method_t *m) {
    switch (m->tag) {
    case WASI_HTTP_TYPES_METHOD_GET: return "GET";
    case WASI_HTTP_TYPES_METHOD_HEAD: return "HEAD";
    case WASI_HTTP_TYPES_METHOD_POST: return "POST";
    case WASI_HTTP_TYPES_METHOD_PUT: return "PUT";
    case WASI_HTTP_TYPES_METHOD_DELETE: return "DELETE";
    case WASI_HTTP_TYPES_METHOD_OPTIONS: return "OPTIONS";
    case WASI_HTTP_TYPES_METHOD_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

/* Answers 500 through the outparam when the response cannot be built. */
static void fail(exports_wasi_http_incoming_handler_own_response_outparam_t out, const char *why) {
    fprintf(stderr, "hello: %s\n", why);
    wasi_http_types_result_own_outgoing_response_error_code_t result;
    memset(&result, 0, sizeof result);
    result.is_err = true;
    result.val.err.tag = WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR;
    result.val.err.val.internal_error.is_some = true;
    proxy_string_dup(&result.val.err.val.internal_error.val, why);
    wasi_http_types_static_response_outparam_set(out, &result);
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
    wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);

    wasi_http_types_method_t method;
    wasi_http_types_method_incoming_request_method(req, &method);
    proxy_string_t path;
    bool has_path = wasi_http_types_method_incoming_request_path_with_query(req, &path);
    printf("hello: %s %.*s\n", method_name(&method), has_path ? (int)path.len : 1,
           has_path ? (const char *)path.ptr : "/");
    fflush(stdout);

    if (has_path && path.len == 5 && memcmp(path.ptr, "/trap", 5) == 0) {
        /* A guest bug: the instance traps. The host must turn this into a 500 for this
         * request only. */
        __builtin_trap();
    }
    if (has_path) proxy_string_free(&path);
    wasi_http_types_method_free(&method);
    wasi_http_types_incoming_request_drop_own(request);

    wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
    proxy_string_t name;
    proxy_string_dup(&name, "content-type");
    wasi_http_types_field_value_t value = {(uint8_t *)"text/plain", strlen("text/plain")};
    wasi_http_types_header_error_t header_err;
    if (!wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(headers), &name, &value,
                                              &header_err)) {
        fail(response_out, "could not set content-type");
        return;
    }
    proxy_string_free(&name);

    wasi_http_types_own_outgoing_response_t response =
        wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_borrow_outgoing_response_t resp = wasi_http_types_borrow_outgoing_response(response);
    wasi_http_types_method_outgoing_response_set_status_code(resp, 200);
    wasi_http_types_own_outgoing_body_t body;
    if (!wasi_http_types_method_outgoing_response_body(resp, &body)) {
        fail(response_out, "could not take the response body");
        return;
    }

    /* Send the head first, then stream the body. */
    wasi_http_types_result_own_outgoing_response_error_code_t result;
    memset(&result, 0, sizeof result);
    result.is_err = false;
    result.val.ok = response;
    wasi_http_types_static_response_outparam_set(response_out, &result);

    wasi_http_types_own_output_stream_t stream;
    if (!wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream)) {
        fprintf(stderr, "hello: could not open the body stream\n");
        return;
    }
    proxy_list_u8_t bytes = {(uint8_t *)BODY, sizeof BODY - 1};
    wasi_io_streams_stream_error_t stream_err;
    if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
            wasi_io_streams_borrow_output_stream(stream), &bytes, &stream_err)) {
        fprintf(stderr, "hello: writing the body failed\n");
    }
    wasi_io_streams_output_stream_drop_own(stream);
    wasi_http_types_error_code_t finish_err;
    if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &finish_err)) {
        fprintf(stderr, "hello: finishing the body failed\n");
    }
}
