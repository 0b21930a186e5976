;; WASI p1 command: blocks in the host (poll_oneoff on a one-hour relative clock timeout), so
;; no wasm runs: only the wall-clock deadline (not epochs) or a kill can end it early.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; subscription at 0 (48 bytes): userdata u64 at 0, tag u8 at 8 (0 = clock), then the clock
  ;; fields: id u32 at 16 (1 = monotonic), timeout u64 at 24 (ns), precision u64 at 32,
  ;; flags u16 at 40 (0 = relative). The event lands at 64, the event count at 128.
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
