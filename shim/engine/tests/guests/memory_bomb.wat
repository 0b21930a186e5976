;; WASI p1 command: grows its memory 1 MiB (16 pages) at a time until `memory.grow` fails,
;; then traps with `unreachable`. With a memory limit it must trap, not take the host down.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
