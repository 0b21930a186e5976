;; A core module that is not a command: no `_start`, only a library function. Loading it must
;; fail with an error that names what was found.
(module
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1))))
