;; WASI p1 command: prints the value of the environment variable GREETING followed by "\n",
;; or "GREETING unset\n" when the guest's environment has no such variable.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; layout: 0 count, 4 size, 8 iovec, 16 nwritten, 32 prefix, 48 message,
  ;; 256.. environ pointers, 8192.. environ strings
  (data (i32.const 32) "GREETING=")
  (data (i32.const 48) "GREETING unset\n")
  (data (i32.const 64) "\n")

  ;; write(len bytes at ptr) to stdout
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 8) (local.get $ptr))
    (i32.store (i32.const 12) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16))))

  ;; does the NUL-terminated string at $s start with the 9-byte prefix at 32?
  (func $has_prefix (param $s i32) (result i32)
    (local $i i32)
    (block $no
      (loop $each
        (br_if $no (i32.ne (i32.load8_u (i32.add (local.get $s) (local.get $i)))
                           (i32.load8_u (i32.add (i32.const 32) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $each (i32.lt_u (local.get $i) (i32.const 9))))
      (return (i32.const 1)))
    (i32.const 0))

  (func $strlen (param $s i32) (result i32)
    (local $n i32)
    (block $end
      (loop $each
        (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $s) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $each)))
    (local.get $n))

  (func (export "_start")
    (local $i i32) (local $s i32)
    (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $environ_get (i32.const 256) (i32.const 8192)))
    (block $not_found
      (loop $each
        (br_if $not_found (i32.ge_u (local.get $i) (i32.load (i32.const 0))))
        (local.set $s (i32.load (i32.add (i32.const 256) (i32.mul (local.get $i) (i32.const 4)))))
        (if (call $has_prefix (local.get $s))
          (then
            (call $print (i32.add (local.get $s) (i32.const 9))
                         (i32.sub (call $strlen (local.get $s)) (i32.const 9)))
            (call $print (i32.const 64) (i32.const 1))
            (return)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (call $print (i32.const 48) (i32.const 15))))
