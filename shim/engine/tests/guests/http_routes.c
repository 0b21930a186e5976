// wasi:http/incoming-handler component with one route per behaviour the tests need:
//   GET  /               200 "routes guest\n"
//   ANY  /echo...        200, header x-echo: yes, body lists method, path, headers and body
//   GET  /trap           traps (__builtin_trap)
//   GET  /slow?ms=N      sleeps N ms (wasi:clocks monotonic pollable), then 200 "slept N ms\n"
//   GET  /spin           loops forever without calling the host
//   GET  /alloc?mb=N     mallocs and touches N MiB; traps if malloc fails
//   GET  /outbound       GET http://<x-target header>/ and answers 200 "upstream: <body>\n",
//                        or 502 "outbound failed: <error>\n"
//   GET  /log            prints "log line from the guest" to stdout, then 200 "logged\n"
//   GET  /late-trap      sends 200 headers and part of the body, then traps
//   GET  /error-code     answers with error-code internal-error, then traps
#include "proxy.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A growable byte buffer for response bodies.
typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *data, size_t len) {
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 64;
        b->data = realloc(b->data, b->cap);
        if (!b->data) __builtin_trap();
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void buf_str(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status,
                    const char *header, const char *data, size_t len) {
    wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
    if (header) {
        proxy_string_t name = {(uint8_t *)header, strlen(header)};
        wasi_http_types_field_value_t value = {(uint8_t *)"yes", 3};
        wasi_http_types_header_error_t err;
        wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(headers), &name, &value,
                                             &err);
    }
    wasi_http_types_own_outgoing_response_t response =
        wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_method_outgoing_response_set_status_code(
        wasi_http_types_borrow_outgoing_response(response), status);
    wasi_http_types_own_outgoing_body_t body;
    wasi_http_types_method_outgoing_response_body(
        wasi_http_types_borrow_outgoing_response(response), &body);
    wasi_http_types_own_output_stream_t stream;
    wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream);

    wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false};
    result.val.ok = response;
    wasi_http_types_static_response_outparam_set(out, &result);

    // blocking-write-and-flush takes at most 4096 bytes per call.
    for (size_t done = 0; done < len;) {
        size_t chunk = len - done > 4096 ? 4096 : len - done;
        proxy_list_u8_t bytes = {(uint8_t *)data + done, chunk};
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
                wasi_io_streams_borrow_output_stream(stream), &bytes, &err))
            break;
        done += chunk;
    }
    wasi_io_streams_output_stream_drop_own(stream);
    wasi_http_types_error_code_t body_error;
    wasi_http_types_static_outgoing_body_finish(body, NULL, &body_error);
}

// 200 with headers and the start of a body, then a trap before the body is finished.
static void late_trap(wasi_http_types_own_response_outparam_t out) {
    wasi_http_types_own_outgoing_response_t response =
        wasi_http_types_constructor_outgoing_response(wasi_http_types_constructor_fields());
    wasi_http_types_own_outgoing_body_t body;
    wasi_http_types_method_outgoing_response_body(
        wasi_http_types_borrow_outgoing_response(response), &body);
    wasi_http_types_own_output_stream_t stream;
    wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream);
    wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false};
    result.val.ok = response;
    wasi_http_types_static_response_outparam_set(out, &result);
    proxy_list_u8_t bytes = {(uint8_t *)"partial", 7};
    wasi_io_streams_stream_error_t err;
    wasi_io_streams_method_output_stream_blocking_write_and_flush(
        wasi_io_streams_borrow_output_stream(stream), &bytes, &err);
    __builtin_trap();
}

// The response is an error code (the host answers 500), then the guest traps anyway.
static void error_code_then_trap(wasi_http_types_own_response_outparam_t out) {
    wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = true};
    result.val.err.tag = WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR;
    result.val.err.val.internal_error.is_some = false;
    wasi_http_types_static_response_outparam_set(out, &result);
    __builtin_trap();
}

static void respond_str(wasi_http_types_own_response_outparam_t out, uint16_t status,
                        const char *text) {
    respond(out, status, NULL, text, strlen(text));
}

// Read a whole input stream into `b`.
static void read_all(wasi_io_streams_own_input_stream_t stream, buf_t *b) {
    for (;;) {
        proxy_list_u8_t chunk;
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_input_stream_blocking_read(
                wasi_io_streams_borrow_input_stream(stream), 65536, &chunk, &err))
            break; // closed (end of body) or failed
        buf_add(b, chunk.ptr, chunk.len);
        proxy_list_u8_free(&chunk);
    }
    wasi_io_streams_input_stream_drop_own(stream);
}

// The value of `key=` in the query string of `path`, as a number (0 when absent).
static unsigned long query_number(const char *path, const char *key) {
    const char *q = strchr(path, '?');
    size_t klen = strlen(key);
    while (q) {
        q++;
        if (strncmp(q, key, klen) == 0 && q[klen] == '=') return strtoul(q + klen + 1, NULL, 10);
        q = strchr(q, '&');
    }
    return 0;
}

static const char *method_name(wasi_http_types_method_t *m) {
    static const char *names[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                  "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    return m->tag < 9 ? names[m->tag] : "OTHER";
}

static void echo(wasi_http_types_borrow_incoming_request_t req, const char *path,
                 wasi_http_types_own_response_outparam_t out) {
    buf_t b = {0};
    wasi_http_types_method_t method;
    wasi_http_types_method_incoming_request_method(req, &method);
    buf_str(&b, "method: ");
    buf_str(&b, method_name(&method));
    buf_str(&b, "\npath: ");
    buf_str(&b, path);
    buf_str(&b, "\n");
    wasi_http_types_method_free(&method);

    wasi_http_types_own_headers_t headers = wasi_http_types_method_incoming_request_headers(req);
    wasi_http_types_list_tuple2_field_name_field_value_t entries;
    wasi_http_types_method_fields_entries(wasi_http_types_borrow_fields(headers), &entries);
    for (size_t i = 0; i < entries.len; i++) {
        buf_add(&b, entries.ptr[i].f0.ptr, entries.ptr[i].f0.len);
        buf_str(&b, ": ");
        buf_add(&b, entries.ptr[i].f1.ptr, entries.ptr[i].f1.len);
        buf_str(&b, "\n");
    }
    wasi_http_types_list_tuple2_field_name_field_value_free(&entries);
    wasi_http_types_fields_drop_own(headers);

    buf_str(&b, "body: ");
    wasi_http_types_own_incoming_body_t body;
    if (wasi_http_types_method_incoming_request_consume(req, &body)) {
        wasi_http_types_own_input_stream_t stream;
        if (wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body),
                                                        &stream))
            read_all(stream, &b);
        wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(body));
    }
    buf_str(&b, "\n");
    respond(out, 200, "x-echo", b.data, b.len);
    free(b.data);
}

static void sleep_ms(unsigned long ms) {
    wasi_io_poll_own_pollable_t p =
        wasi_clocks_monotonic_clock_subscribe_duration((uint64_t)ms * 1000000ull);
    wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(p));
    wasi_io_poll_pollable_drop_own(p);
}

static void outbound(wasi_http_types_borrow_incoming_request_t req,
                     wasi_http_types_own_response_outparam_t out) {
    char target[256] = {0};
    wasi_http_types_own_headers_t headers = wasi_http_types_method_incoming_request_headers(req);
    proxy_string_t name = {(uint8_t *)"x-target", 8};
    wasi_http_types_list_field_value_t values;
    wasi_http_types_method_fields_get(wasi_http_types_borrow_fields(headers), &name, &values);
    if (values.len > 0 && values.ptr[0].len < sizeof(target))
        memcpy(target, values.ptr[0].ptr, values.ptr[0].len);
    wasi_http_types_list_field_value_free(&values);
    wasi_http_types_fields_drop_own(headers);

    wasi_http_types_own_outgoing_request_t request =
        wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
    wasi_http_types_borrow_outgoing_request_t r = wasi_http_types_borrow_outgoing_request(request);
    wasi_http_types_scheme_t scheme = {.tag = WASI_HTTP_TYPES_SCHEME_HTTP};
    wasi_http_types_method_outgoing_request_set_scheme(r, &scheme);
    proxy_string_t authority = {(uint8_t *)target, strlen(target)};
    wasi_http_types_method_outgoing_request_set_authority(r, &authority);
    proxy_string_t path = {(uint8_t *)"/", 1};
    wasi_http_types_method_outgoing_request_set_path_with_query(r, &path);

    wasi_http_types_own_future_incoming_response_t future;
    wasi_http_types_error_code_t error;
    uint8_t error_tag = 255;
    if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &error)) {
        error_tag = error.tag;
    } else {
        wasi_io_poll_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(
            wasi_http_types_borrow_future_incoming_response(future));
        wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
        wasi_io_poll_pollable_drop_own(ready);
        wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
        wasi_http_types_method_future_incoming_response_get(
            wasi_http_types_borrow_future_incoming_response(future), &got);
        wasi_http_types_future_incoming_response_drop_own(future);
        if (got.is_err) {
            error_tag = 254;
        } else if (got.val.ok.is_err) {
            error_tag = got.val.ok.val.err.tag;
        } else {
            wasi_http_types_own_incoming_response_t response = got.val.ok.val.ok;
            buf_t b = {0};
            buf_str(&b, "upstream: ");
            wasi_http_types_own_incoming_body_t body;
            if (wasi_http_types_method_incoming_response_consume(
                    wasi_http_types_borrow_incoming_response(response), &body)) {
                wasi_http_types_own_input_stream_t stream;
                if (wasi_http_types_method_incoming_body_stream(
                        wasi_http_types_borrow_incoming_body(body), &stream))
                    read_all(stream, &b);
                wasi_http_types_future_trailers_drop_own(
                    wasi_http_types_static_incoming_body_finish(body));
            }
            wasi_http_types_incoming_response_drop_own(response);
            buf_str(&b, "\n");
            respond(out, 200, NULL, b.data, b.len);
            free(b.data);
            return;
        }
    }
    char message[96];
    snprintf(message, sizeof(message), "outbound failed: %s (error code %u)\n",
             error_tag == WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED ? "HTTP-request-denied"
                                                                         : "other",
             error_tag);
    respond_str(out, 502, message);
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t out) {
    wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);
    char path[1024] = "/";
    proxy_string_t p;
    if (wasi_http_types_method_incoming_request_path_with_query(req, &p)) {
        size_t n = p.len < sizeof(path) - 1 ? p.len : sizeof(path) - 1;
        memcpy(path, p.ptr, n);
        path[n] = 0;
        proxy_string_free(&p);
    }
    char route[1024];
    strcpy(route, path);
    route[strcspn(route, "?")] = 0;

    if (strncmp(route, "/echo", 5) == 0) {
        echo(req, path, out);
    } else if (strcmp(route, "/trap") == 0) {
        __builtin_trap();
    } else if (strcmp(route, "/slow") == 0) {
        unsigned long ms = query_number(path, "ms");
        sleep_ms(ms);
        char text[64];
        snprintf(text, sizeof(text), "slept %lu ms\n", ms);
        respond_str(out, 200, text);
    } else if (strcmp(route, "/spin") == 0) {
        for (volatile unsigned long i = 0;; i++) {
        }
    } else if (strcmp(route, "/alloc") == 0) {
        unsigned long mb = query_number(path, "mb");
        char *block = malloc(mb << 20);
        if (!block) __builtin_trap();
        memset(block, 1, mb << 20);
        char text[64];
        snprintf(text, sizeof(text), "allocated %lu MiB (%d)\n", mb, block[(mb << 20) - 1]);
        free(block);
        respond_str(out, 200, text);
    } else if (strcmp(route, "/outbound") == 0) {
        outbound(req, out);
    } else if (strcmp(route, "/late-trap") == 0) {
        late_trap(out);
    } else if (strcmp(route, "/error-code") == 0) {
        error_code_then_trap(out);
    } else if (strcmp(route, "/log") == 0) {
        printf("log line from the guest\n");
        fflush(stdout);
        respond_str(out, 200, "logged\n");
    } else {
        respond_str(out, 200, "routes guest\n");
    }
    wasi_http_types_incoming_request_drop_own(request);
}
