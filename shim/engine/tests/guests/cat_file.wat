;; WASI p1 command: `cat_file.wasm PATH` opens PATH relative to the first preopened directory
;; (fd 3), copies up to 4 KiB of it to stdout and exits 0. If the open fails it prints
;; "open failed\n" and exits with the WASI errno (non-zero), so a test can tell a denied open
;; (e.g. PATH escaping the preopen) from a successful one.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; layout: 0 argc, 4 argv size, 8 opened fd, 12 nread, 16 iovec, 24 nwritten,
  ;; 32.. argv pointers, 64 message, 1024.. argv strings, 8192.. file buffer (4 KiB)
  (data (i32.const 64) "open failed\n")

  (func $strlen (param $s i32) (result i32)
    (local $n i32)
    (block $end
      (loop $each
        (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $s) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $each)))
    (local.get $n))

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24))))

  (func (export "_start")
    (local $path i32) (local $errno i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.lt_u (i32.load (i32.const 0)) (i32.const 2))
      (then (call $proc_exit (i32.const 100))))
    (drop (call $args_get (i32.const 32) (i32.const 1024)))
    (local.set $path (i32.load (i32.const 36)))
    ;; path_open(dirfd 3, follow symlinks, path, no oflags, rights FD_READ, none, no fdflags)
    (local.set $errno
      (call $path_open (i32.const 3) (i32.const 1)
        (local.get $path) (call $strlen (local.get $path))
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8)))
    (if (local.get $errno)
      (then
        (call $write (i32.const 1) (i32.const 64) (i32.const 12))
        (call $proc_exit (local.get $errno))))
    (i32.store (i32.const 16) (i32.const 8192))
    (i32.store (i32.const 20) (i32.const 4096))
    (drop (call $fd_read (i32.load (i32.const 8)) (i32.const 16) (i32.const 1) (i32.const 12)))
    (call $write (i32.const 1) (i32.const 8192) (i32.load (i32.const 12)))))
