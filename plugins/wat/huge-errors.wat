;; world: filter
;; Answers a record error for every record, every message the same 256 KiB of memory: lifted
;; and kept per record, 4096 records would be 1 GiB of host memory.
(global $msg (mut i32) (i32.const 0))
(global $msg_len i32 (i32.const 262144))

(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32)
  (global.set $msg (call $alloc (global.get $msg_len) (i32.const 1)))
  (memory.fill (global.get $msg) (i32.const 65) (global.get $msg_len))
  (call $keep)
  (call $init_ok))

(func (export "filter") (param i32 i32 i32) (param $spans_len i32) (param i32 i32 i64) (result i32)
  (local $n i32) (local $errs i32) (local $i i32) (local $e i32)
  (local.set $n (call $records (local.get $spans_len)))
  (local.set $errs (call $alloc (i32.mul (local.get $n) (i32.const 12)) (i32.const 4)))
  (block $done
    (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $e (i32.add (local.get $errs) (i32.mul (local.get $i) (i32.const 12))))
      (i32.store (local.get $e) (local.get $i))
      (i32.store offset=4 (local.get $e) (global.get $msg))
      (i32.store offset=8 (local.get $e) (global.get $msg_len))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
  (call $filter_result
    (call $keep_all (local.get $n)) (local.get $n) (local.get $errs) (local.get $n)))
(func (export "cabi_post_filter") (param i32) (call $reset))
