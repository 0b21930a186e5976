;; WASI p1 command: spins forever without calling the host. Only epoch interruption can stop it.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
