;; WASI p1 command: `write_file.wasm PATH` creates (or truncates) PATH in the first preopened
;; directory (fd 3) and writes "written by wasm\n" into it, exit 0. If the open fails it exits
;; with the WASI errno (non-zero): a read-only preopen must make it fail.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; layout: 0 argc, 4 argv size, 8 opened fd, 16 iovec, 24 nwritten, 32.. argv pointers,
  ;; 64 content, 1024.. argv strings
  (data (i32.const 64) "written by wasm\n")

  (func $strlen (param $s i32) (result i32)
    (local $n i32)
    (block $end
      (loop $each
        (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $s) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $each)))
    (local.get $n))

  (func (export "_start")
    (local $path i32) (local $errno i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.lt_u (i32.load (i32.const 0)) (i32.const 2))
      (then (call $proc_exit (i32.const 100))))
    (drop (call $args_get (i32.const 32) (i32.const 1024)))
    (local.set $path (i32.load (i32.const 36)))
    ;; path_open(dirfd 3, follow symlinks, path, O_CREAT|O_TRUNC, rights FD_WRITE, none, 0)
    (local.set $errno
      (call $path_open (i32.const 3) (i32.const 1)
        (local.get $path) (call $strlen (local.get $path))
        (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 8)))
    (if (local.get $errno) (then (call $proc_exit (local.get $errno))))
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 16))
    (local.set $errno
      (call $fd_write (i32.load (i32.const 8)) (i32.const 16) (i32.const 1) (i32.const 24)))
    (if (local.get $errno) (then (call $proc_exit (local.get $errno))))))
