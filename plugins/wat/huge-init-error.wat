;; world: filter
;; `init` fails with a 10 MB message holding a newline and a forged log line: the router must
;; print a bounded, escaped message (it used to print all of it on one line).
(data (i32.const 1024) "\n2026-12-07T06:00:00.000000Z ERROR edge_router: FORGED BY A PLUGIN\n")
(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32)
  (local $msg i32)
  (local.set $msg (call $alloc (i32.const 10000000) (i32.const 1)))
  (memory.fill (local.get $msg) (i32.const 69) (i32.const 10000000))
  (memory.copy (i32.add (local.get $msg) (i32.const 100)) (i32.const 1024) (i32.const 67))
  (i32.store8 (i32.const 16) (i32.const 1))
  (i32.store (i32.const 20) (local.get $msg))
  (i32.store (i32.const 24) (i32.const 10000000))
  (i32.const 16))
(func (export "filter") (param i32 i32 i32 i32 i32 i32 i64) (result i32) unreachable)
