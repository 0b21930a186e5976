;; WASI p1 command: unbounded recursion. Must trap with a stack overflow, not crash the host.
(module
  (memory (export "memory") 1)
  (func $recurse (param $depth i64) (result i64)
    (i64.add (call $recurse (i64.add (local.get $depth) (i64.const 1))) (i64.const 1)))
  (func (export "_start")
    (drop (call $recurse (i64.const 0)))))
